package filesink

import (
	stdgzip "compress/gzip"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/spoki-telescope/spoki/records"
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

// floodSYNs is how many SYNs' records BenchmarkGzipFlood compresses.
const floodSYNs = 100_000

// floodLogs returns the three records of each of n SYNs of a
// spoofed irregular flood (ZMap-like: no options, TTL 241, IP ID 54321,
// a random source and ISN, a random address of the /24, port 23, 10 µs
// apart) and their SYN-ACKs, as the writer encodes them: the raw rows, the
// reply rows and the `syn` events, each kind in one stream as each has its
// own file. Random fields compress worse than the example logs' real
// traffic does, so this is what a flood's hour costs the compressor.
func floodLogs(n int) (raw, reply, events []byte) {
	x := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 { // xorshift64
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range n {
		r := next()
		p := records.Packet{
			Time: t0.Add(time.Duration(i) * 10 * time.Microsecond), Proto: records.ProtoTCP,
			Src:  netip.AddrFrom4([4]byte{byte(r >> 56), byte(r >> 48), byte(r >> 40), byte(r >> 32)}),
			Dst:  netip.AddrFrom4([4]byte{192, 0, 2, byte(r >> 24)}),
			IPID: 54321, TTL: 241, SrcPort: uint16(r), DstPort: 23, Seq: uint32(next()),
			Flags: records.FlagSYN, Window: 65535, WScale: -1,
			Probed: true, Method: records.MethodSYNACK, UserID: uint32(i + 1), NumProbes: 1,
		}
		p.ProbeAck, p.ProbeSeq = p.Seq+1, uint32(next()) // the cookie
		raw = records.AppendRawRow(raw, &p)
		reply = records.AppendReplyRow(reply, &records.Reply{
			Time: p.Time, Method: records.MethodSYNACK, UserID: p.UserID, NumProbes: 1,
			Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort,
		})
		events = records.AppendSYNEvent(events, &p)
	}
	return raw, reply, events
}

// BenchmarkGzipFlood compresses a flood's records (floodLogs) with
// klauspost's gzip as the writer's compressor does, one file after the
// other on one goroutine, and reports ns/SYN: the compressor's cost per
// SYN under a flood, with all three records and with the Spoki CSV rows
// alone (--syn-events=false).
func BenchmarkGzipFlood(b *testing.B) {
	raw, reply, events := floodLogs(floodSYNs)
	for _, c := range []struct {
		name    string
		files   [][]byte
		workers int // Config.CompressWorkers
	}{
		{"all", [][]byte{raw, reply, events}, 1},
		{"omit-syn-events", [][]byte{raw, reply}, 1},
		{"all-workers-2", [][]byte{raw, reply, events}, 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for _, f := range c.files {
				size += len(f)
			}
			b.SetBytes(int64(size))
			var n countW
			for b.Loop() {
				for _, f := range c.files {
					w := newGzipWriter(&n, c.workers)
					if _, err := w.Write(f); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*floodSYNs), "ns/SYN")
			b.ReportMetric(float64(size)/floodSYNs, "B/SYN")
			b.ReportMetric(float64(n)/float64(b.N)/float64(size), "ratio")
		})
	}
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
