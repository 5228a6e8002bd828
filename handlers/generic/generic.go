package generic

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/records"
)

// Detail is the "generic" object of a session event.
type Detail struct {
	// Bytes counts the client bytes recorded, first segment included.
	Bytes int
	// Truncated is set when the client sent more than MaxBytes in the window.
	Truncated bool
	// More is the recorded data after the first segment (JSON: base64,
	// omitted when empty).
	More []byte
}

var _ records.Marshaler = Detail{}

// MarshalJSON implements records.Marshaler, without reflection.
func (d Detail) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 48+base64.StdEncoding.EncodedLen(len(d.More)))
	b = append(b, `{"bytes":`...)
	b = strconv.AppendInt(b, int64(d.Bytes), 10)
	b = append(b, `,"truncated":`...)
	b = strconv.AppendBool(b, d.Truncated)
	if len(d.More) > 0 {
		b = append(b, `,"more":"`...)
		b = base64.StdEncoding.AppendEncode(b, d.More)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// Serve implements handlers.Handler: it reads until the client is idle for
// the read window, closes, or exceeds the cap, then resets the connection.
// The client's hang-up or silence is the normal end; only the Mux's budgets
// make it return an error.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	defer c.Reset() // Spoki's behaviour; the error only says the conn cannot send RSTs
	if c.First() == nil {
		return Detail{}, nil
	}
	// One byte past the cap tells a client that sent more from one that
	// sent exactly MaxBytes.
	buf := make([]byte, h.maxBytes+1)
	var n int
	var err error
	for n < len(buf) && err == nil {
		_ = c.SetReadDeadline(time.Now().Add(h.readWindow))
		var k int
		k, err = c.Read(buf[n:])
		n += k
	}
	if !errors.Is(err, handlers.ErrBudgetExceeded) {
		err = nil
	}
	d := Detail{Bytes: min(n, h.maxBytes), Truncated: n > h.maxBytes}
	if first := len(c.First()); d.Bytes > first {
		d.More = buf[first:d.Bytes]
	}
	return d, err
}
