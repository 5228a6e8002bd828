package records

// Reading the logs back: the files spoki writes (and rotates into .gz) are
// read by the lab, the scenarios and the analyses, each line by line.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
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

// LineOptions say how ReadLines treats the lines besides complete ones of
// bounded length.
type LineOptions struct {
	// Max caps a line, its newline included, in bytes; 0 is no cap.
	Max int
	// Long, if set, is called with the number of each line longer than
	// Max, which is then skipped; if nil, such a line ends the read with
	// bufio.ErrTooLong. Long's error ends the read and is returned.
	Long func(n int) error
	// DropPartial drops a last line without its newline (in a live log, a
	// line still being written) instead of passing it on.
	DropPartial bool
}

// ReadLines calls fn with every line of r, blank ones too, and its number
// (from 1), without its "\n"; line is valid only until fn returns. At the end
// of r, or at a read error, a last line without its newline is passed unless
// o.DropPartial, and then the error is returned (nil at the end). fn's error
// ends the read and is returned as it is.
func ReadLines(r io.Reader, o LineOptions, fn func(n int, line []byte) error) error {
	br := bufio.NewReaderSize(r, logBuffer)
	var buf []byte // a line longer than br's buffer, gathered
	long := false  // the line is longer than o.Max: skipped
	for n := 1; ; {
		chunk, err := br.ReadSlice('\n')
		if o.Max > 0 && !long && len(buf)+len(chunk) > o.Max {
			if o.Long == nil {
				return bufio.ErrTooLong
			}
			long, buf = true, buf[:0]
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if !long {
				buf = append(buf, chunk...)
			}
			continue
		}
		line := chunk
		if len(buf) > 0 {
			buf = append(buf, chunk...)
			line = buf
		}
		if err != nil && (o.DropPartial || (len(line) == 0 && !long)) {
			return ignoreEOF(err)
		}
		if long {
			if lerr := o.Long(n); lerr != nil {
				return lerr
			}
		} else if ferr := fn(n, bytes.TrimSuffix(line, []byte{'\n'})); ferr != nil {
			return ferr
		}
		if err != nil {
			return ignoreEOF(err)
		}
		n++
		long, buf = false, buf[:0]
	}
}

// ignoreEOF returns err, or nil for io.EOF.
func ignoreEOF(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}
