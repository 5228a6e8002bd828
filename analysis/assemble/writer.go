package assemble

// The output files: one gzip file per batch, named after
// the first record's second, appended to as the original does ("at").

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/gzip"
)

// FileName returns the output file name of a batch whose first record has
// time ts: TAG-events-YYYYMMDD-HHMMSS.json.gz (UTC).
func FileName(tag string, ts int64) string {
	return tag + "-events-" + time.Unix(ts, 0).UTC().Format("20060102-150405") + ".json.gz"
}

// FileSink writes each batch into Dir/FileName(Tag, first record), one JSON
// object per line. An existing file gets a new gzip member appended, so the
// decompressed file is what the original's appending writer leaves.
type FileSink struct {
	// Dir is the output directory (the original ignores its -o and writes
	// into the working directory; spoki honours it).
	Dir string
	// Tag is the datasource tag of the file names.
	Tag string
	// Level is the gzip level (0 means gzip.BestSpeed: the compressed bytes
	// are not what must match the original, the decompressed content is;
	// compression dominates the cost).
	Level int
	// Written lists the files written, in order, without repeats.
	Written []string

	buf []byte
}

var _ Sink = (*FileSink)(nil)

// WriteBatch implements Sink.
func (s *FileSink) WriteBatch(_ int, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	path := filepath.Join(s.Dir, FileName(s.Tag, recs[0].ts))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("assemble: open output: %w", err)
	}
	level := s.Level
	if level == 0 {
		level = gzip.BestSpeed
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	zw, err := gzip.NewWriterLevel(bw, level)
	if err != nil {
		f.Close()
		return fmt.Errorf("assemble: gzip: %w", err)
	}
	for i := range recs {
		s.buf = recs[i].AppendJSON(s.buf[:0])
		s.buf = append(s.buf, '\n')
		if _, err := zw.Write(s.buf); err != nil {
			f.Close()
			return fmt.Errorf("assemble: write %s: %w", path, err)
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("assemble: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("assemble: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("assemble: close %s: %w", path, err)
	}
	if n := len(s.Written); n == 0 || s.Written[n-1] != path {
		s.Written = append(s.Written, path)
	}
	return nil
}
