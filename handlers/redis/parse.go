package redis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ReadCommand reads one command from r: a RESP array of bulk strings, or an
// inline command (a line of space-separated words). It returns at most
// maxArgs arguments, each cut to maxArgBytes, and truncated if it cut
// anything; it still consumes the whole command so that the next one can
// be read. An empty inline line yields no arguments and no error, as Redis
// ignores it.
//
// r's buffer must hold maxInlineSize bytes (bufio.NewReaderSize): a line
// that does not fit is malformed. Errors from r are returned as they are
// (io.EOF at a command boundary is the client's hang-up); malformed input
// wraps ErrMalformed.
func ReadCommand(r *bufio.Reader, maxArgs, maxArgBytes int) (args []string, truncated bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return nil, false, err
	}
	if len(line) == 0 || line[0] != '*' {
		for _, w := range bytes.Fields(line) {
			if len(args) == maxArgs {
				truncated = true
				break
			}
			args = append(args, capString(w, maxArgBytes, &truncated))
		}
		return args, truncated, nil
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n > maxArrayLen {
		return nil, false, fmt.Errorf("%w: array header %q", ErrMalformed, capString(line, 32, new(bool)))
	}
	for i := 0; i < n; i++ {
		// Each element is a bulk string: "$LEN\r\n" then LEN bytes and "\r\n".
		hdr, err := readLine(r)
		if err != nil {
			return args, truncated, unexpected(err)
		}
		if len(hdr) == 0 || hdr[0] != '$' {
			return args, truncated, fmt.Errorf("%w: element %d is not a bulk string", ErrMalformed, i)
		}
		size, err := strconv.Atoi(string(hdr[1:]))
		if err != nil || size < 0 || size > maxBulkBytes {
			return args, truncated, fmt.Errorf("%w: bulk length %q", ErrMalformed, capString(hdr, 32, new(bool)))
		}
		keep := 0
		if len(args) < maxArgs {
			keep = min(size, maxArgBytes)
		}
		buf := make([]byte, keep)
		if _, err := io.ReadFull(r, buf); err != nil {
			return args, truncated, unexpected(err)
		}
		if _, err := r.Discard(size - keep); err != nil {
			return args, truncated, unexpected(err)
		}
		crlf := make([]byte, 2)
		if _, err := io.ReadFull(r, crlf); err != nil {
			return args, truncated, unexpected(err)
		}
		if string(crlf) != "\r\n" {
			return args, truncated, fmt.Errorf("%w: bulk string %d not followed by CRLF", ErrMalformed, i)
		}
		if len(args) < maxArgs {
			args = append(args, string(buf))
			truncated = truncated || keep < size
		} else {
			truncated = true
		}
	}
	return args, truncated, nil
}

// readLine returns the next line of r without its "\r\n" or "\n". The slice
// is r's buffer, valid until the next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, r.Size())
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF // a partial line, then hang-up
	case err != nil:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// unexpected turns io.EOF inside a command into io.ErrUnexpectedEOF, so
// that only a hang-up between commands reads as a normal end.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// capString returns b as a string of at most n bytes, setting *cut if it
// had to cut.
func capString(b []byte, n int, cut *bool) string {
	if len(b) > n {
		*cut = true
		b = b[:n]
	}
	return string(b)
}
