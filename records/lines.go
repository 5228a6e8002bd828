package records

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

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
