package handlers

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrBudgetExceeded is wrapped by the errors that Conn's Read and Write
// return once one of the Mux's per-connection budgets (idle time, total
// time, bytes to server, bytes to client) ran out. It is final for the
// connection: the handler should stop and return it (or an error wrapping
// it), which the Mux counts in Stats.BudgetExceeded. Deadline errors also
// wrap os.ErrDeadlineExceeded.
var ErrBudgetExceeded = errors.New("handlers: budget exceeded")

// ErrEventDropped is wrapped by the error Conn.Emit returns when the event
// was not written: the Mux has no event sink or the connection used up its
// MaxEventsPerConn. It is not final: the handler should carry on.
var ErrEventDropped = errors.New("handlers: event dropped")

// EndErr maps the error that ended a handler's exchange to Serve's result,
// for handlers whose Serve ends on the first failed read or write: an error
// wrapping ErrBudgetExceeded or one of final (the handler's own final
// errors, such as its ErrMalformed) is returned as it is; the client's
// hang-up (io.EOF) and the handler's own read deadline
// (os.ErrDeadlineExceeded) are normal ends and yield nil; any other error
// is returned wrapped as "name: err".
func EndErr(name string, err error, final ...error) error {
	if errors.Is(err, ErrBudgetExceeded) {
		return err
	}
	for _, f := range final {
		if errors.Is(err, f) {
			return err
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}
