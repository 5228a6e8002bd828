package records

// Reading the logs back: the files spoki writes (and rotates into .gz) are
// read by the lab, the scenarios and the analyses, each line by line.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// logBuffer is the read buffer of a log file (and of gzip's input).
const logBuffer = 64 << 10

// gzipMagic are the first bytes of every gzip member (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// EventLogFiles returns the event-log files of tag in dir
// (TAG.events.YYYYMMDD-HH.jsonl, then the rotated TAG.events.*.jsonl.gz),
// each group sorted by name.
func EventLogFiles(dir, tag string) ([]string, error) {
	var files []string
	for _, pat := range []string{tag + ".events.*.jsonl", tag + ".events.*.jsonl.gz"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	return files, nil
}

// OpenLog opens the log file at path for reading: through gzip if its name
// ends in .gz, as it is otherwise.
func OpenLog(path string) (io.ReadCloser, error) {
	return openLog(path, func(*bufio.Reader) bool { return strings.HasSuffix(path, ".gz") })
}

// OpenLogSniffed is OpenLog for files whose names are not to be trusted (a
// file may be compressed after it was named): it reads through gzip when the
// file starts with gzip's magic bytes, whatever its name.
func OpenLogSniffed(path string) (io.ReadCloser, error) {
	return openLog(path, func(br *bufio.Reader) bool {
		m, _ := br.Peek(len(gzipMagic))
		return bytes.Equal(m, gzipMagic)
	})
}

// openLog opens path, through gzip if gzipped says so of its buffered start.
func openLog(path string, gzipped func(*bufio.Reader) bool) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, logBuffer)
	r, err := NewLogReader(br, gzipped(br))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return logFile{r, f}, nil
}

// NewLogReader returns the log data that r holds: decompressed if gzipped
// (every member of a multi-member file: appending to a .gz adds one), r
// itself otherwise. A gzipped r should be buffered (an io.ByteReader), or
// gzip reads it through a small buffer of its own.
func NewLogReader(r io.Reader, gzipped bool) (io.Reader, error) {
	if !gzipped {
		return r, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	return zr, nil
}

// logFile is an open log file: its data and the file to close.
type logFile struct {
	io.Reader
	f *os.File
}

func (l logFile) Close() error { return l.f.Close() }

// ReadLogLines reads the log file at path (OpenLog) and calls fn with each
// line that is not blank, without its line end. An error of fn is returned
// naming the file and the line (PATH:N: err), a read error naming the file.
func ReadLogLines(path string, o LineOptions, fn func(line []byte) error) error {
	rc, err := OpenLog(path)
	if err != nil {
		return err
	}
	defer rc.Close()
	var bad error // fn's, with its place
	err = ReadLines(rc, o, func(n int, line []byte) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		if err := fn(line); err != nil {
			bad = fmt.Errorf("%s:%d: %w", path, n, err)
			return bad
		}
		return nil
	})
	if bad != nil {
		return bad
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
