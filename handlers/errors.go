package handlers

import "errors"

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
