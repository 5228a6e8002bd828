// Package handlers is spoki's application layer: it takes each TCP
// connection the netstack accepted (a net.Conn and its records.Flow), picks
// the protocol handler that serves it (by the client's first bytes, then by
// port, then the `generic` fallback), runs it under the Mux's budgets and
// turns the exchange into one `session` event.
//
// Data flow: netstack → Mux.ServeConn → Registry.Lookup → Handler.Serve →
// records.Session → MuxConfig.Emit. A handler never touches the netstack or
// the sinks: it reads and writes its Conn and returns what it parsed.
//
// A protocol is one package under handlers/ implementing Handler, plus one
// entry in knownHandlers (config/handlers.go), which spoki run turns into
// a Registry.Register call; see README.md.
package handlers

import (
	"context"
)

// Handler serves one accepted connection for one application protocol.
//
// Serve runs once per connection, on the connection's own goroutine, and
// may run concurrently with other Serve calls of the same Handler: a
// Handler's own state must be safe for concurrent use.
//
// The contract, as with net/http's Handler:
//   - Returning from Serve ends the exchange. The Mux closes the connection
//     after Serve returns; c, its buffers (including First) and any reader
//     wrapped around it must not be used after return, nor from goroutines
//     that outlive Serve.
//   - The budgets belong to the Mux, not the handler: reads and writes on c
//     fail with an error wrapping ErrBudgetExceeded once the idle or total
//     time, or the byte caps, run out, and ctx is cancelled at the total
//     deadline. A handler may set shorter deadlines on c; it cannot extend
//     them.
//   - To end the connection with a TCP RST (as Spoki does) call c.Reset
//     before returning; otherwise the Mux closes it with a FIN.
//   - detail is what the handler parsed: it becomes the object named Name()
//     in the session event, so it must be JSON-encodable (records.Marshaler
//     avoids reflection) and must not alias c's buffers. nil writes no object.
//   - err says why the exchange ended abnormally (a budget, a protocol
//     error); it becomes the session's error field and is counted. Normal
//     ends, including a client that hangs up, return nil.
//   - A panic is recovered per connection: the Mux counts it, logs one Error
//     line with the stack, resets the connection and still emits the session.
type Handler interface {
	// Name returns the handler's app_proto value, which is also the key of
	// its detail object in the session event. It must be constant, non-empty
	// and unique within a Registry.
	Name() string
	// Serve handles the connection c until the exchange ends, and returns
	// what it parsed. See the interface doc for the contract.
	Serve(ctx context.Context, c *Conn) (detail any, err error)
}

// HandlerFunc is the serve method of a Handler as an ordinary function.
// Func pairs it with a name to make a Handler.
type HandlerFunc func(ctx context.Context, c *Conn) (detail any, err error)

// Serve calls f(ctx, c).
func (f HandlerFunc) Serve(ctx context.Context, c *Conn) (any, error) { return f(ctx, c) }

// Func returns a Handler named name that serves with f. It lets small
// handlers and tests skip declaring a type, as http.HandlerFunc does.
func Func(name string, f HandlerFunc) Handler { return funcHandler{name, f} }

// funcHandler is the Handler returned by Func.
type funcHandler struct {
	name string
	HandlerFunc
}

var _ Handler = funcHandler{}

// Name implements Handler.
func (h funcHandler) Name() string { return h.name }

// OrDefault returns v, or def if v is not positive: in a handler's Config
// a zero (or negative) cap or timeout means the handler's default.
func OrDefault[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
