package filesink

import (
	stdgzip "compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// loadLogs reads the example logs, decompressed.
func loadLogs(b *testing.B) []byte {
	files, _ := filepath.Glob("../testdata/spoki-example-logs/*")
	if len(files) == 0 {
		b.Fatal("no example logs in records/testdata")
	}
	var all []byte
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		var rd io.Reader = r
		if filepath.Ext(f) == ".gz" {
			zr, err := stdgzip.NewReader(r)
			if err != nil {
				b.Fatal(err)
			}
			rd = zr
		}
		d, _ := io.ReadAll(rd)
		all = append(all, d...)
		r.Close()
	}
	return all
}

// BenchmarkGzipLogs compresses the example logs (real Spoki raw and
// scamper CSVs) with the standard library's gzip and with klauspost's,
// which the writer uses for closed hours, side by side: the compressor is
// one goroutine, so its MB/s bound the SYN rate a telescope can keep up
// with while --compress is on (a SYN's rows are about 200-650 bytes).
func BenchmarkGzipLogs(b *testing.B) {
	d := loadLogs(b)
	for _, c := range []struct {
		name string
		new  func(io.Writer) io.WriteCloser
	}{
		{"stdlib", func(w io.Writer) io.WriteCloser { return stdgzip.NewWriter(w) }},
		{"klauspost", func(w io.Writer) io.WriteCloser { return kgzip.NewWriter(w) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(d)))
			var n countW
			for b.Loop() {
				w := c.new(&n)
				if _, err := w.Write(d); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/float64(b.N)/float64(len(d)), "ratio")
		})
	}
}

// countW counts what is written to it.
type countW int64

func (c *countW) Write(p []byte) (int, error) { *c += countW(len(p)); return len(p), nil }
