package handlers

import (
	"sync"
	"sync/atomic"
)

// Stats counts what the Mux did, one counter per cause. Every ServeConn
// call emits exactly one session, so Sessions (and the sum of the
// per-handler counts) equals the connections served.
type Stats struct {
	// Sessions counts session events emitted.
	Sessions atomic.Uint64
	// FirstDataTimeouts counts connections whose client sent no data within
	// FirstDataTimeout; they were dispatched by port with a nil First.
	FirstDataTimeouts atomic.Uint64
	// FirstDataClosed counts connections the client closed or reset before
	// sending data (EOF or a read error other than the timeout); they were
	// dispatched by port with a nil First.
	FirstDataClosed atomic.Uint64
	// Errors counts handlers that returned a non-nil error (panics excluded).
	Errors atomic.Uint64
	// BudgetExceeded counts the Errors that wrap ErrBudgetExceeded: the
	// Mux's request, idle, total or byte budget cut the exchange short.
	BudgetExceeded atomic.Uint64
	// BudgetRequest, BudgetIdle, BudgetTotal and BudgetBytes count the
	// connections on which that Mux budget ended a read or write (the first
	// one to do so), whether or not the handler returned the error:
	// RequestTimeout (a request that never completed: slowloris),
	// IdleTimeout, TotalTimeout, and the bytes-to-server or -client caps.
	BudgetRequest, BudgetIdle, BudgetTotal, BudgetBytes atomic.Uint64
	// Panics counts handler (or content matcher) panics; each was logged
	// once with its stack and its connection reset.
	Panics atomic.Uint64
	// Events counts the extra events handlers raised with Conn.Emit and
	// handed to MuxConfig.EmitEvent.
	Events atomic.Uint64
	// EventsDropped counts Conn.Emit events not written: no EmitEvent
	// sink, the connection's MaxEventsPerConn used up, or fields that do
	// not encode.
	EventsDropped atomic.Uint64

	mu        sync.Mutex
	byHandler map[string]uint64 // +checklocks:mu; sessions by app_proto
}

// StatsSnapshot is a copy of Stats for the stats line and metrics.
type StatsSnapshot struct {
	// The fields below are the values of the Stats counters of the same name.
	Sessions, FirstDataTimeouts, FirstDataClosed uint64
	Errors, BudgetExceeded, Panics               uint64
	BudgetRequest, BudgetIdle                    uint64
	BudgetTotal, BudgetBytes                     uint64
	Events, EventsDropped                        uint64
	// ByHandler counts sessions by app_proto (handler name); the empty name
	// counts content matchers that panicked before a handler was chosen.
	ByHandler map[string]uint64
}

// Snapshot returns the current counts. Counters are read one by one, not
// as one atomic whole.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	by := make(map[string]uint64, len(s.byHandler))
	for k, v := range s.byHandler {
		by[k] = v
	}
	s.mu.Unlock()
	return StatsSnapshot{
		Sessions:          s.Sessions.Load(),
		FirstDataTimeouts: s.FirstDataTimeouts.Load(),
		FirstDataClosed:   s.FirstDataClosed.Load(),
		Errors:            s.Errors.Load(),
		BudgetExceeded:    s.BudgetExceeded.Load(),
		BudgetRequest:     s.BudgetRequest.Load(),
		BudgetIdle:        s.BudgetIdle.Load(),
		BudgetTotal:       s.BudgetTotal.Load(),
		BudgetBytes:       s.BudgetBytes.Load(),
		Panics:            s.Panics.Load(),
		Events:            s.Events.Load(),
		EventsDropped:     s.EventsDropped.Load(),
		ByHandler:         by,
	}
}

// session counts one emitted session served by handler name. The map holds
// one key per registered handler, so it is bounded by the Registry.
func (s *Stats) session(name string) {
	s.Sessions.Add(1)
	s.mu.Lock()
	if s.byHandler == nil {
		s.byHandler = map[string]uint64{}
	}
	s.byHandler[name]++
	s.mu.Unlock()
}

// cut counts one connection that budget b cut short (none: nothing).
func (s *Stats) cut(b budget) {
	switch b {
	case budgetRequest:
		s.BudgetRequest.Add(1)
	case budgetIdle:
		s.BudgetIdle.Add(1)
	case budgetTotal:
		s.BudgetTotal.Add(1)
	case budgetBytes:
		s.BudgetBytes.Add(1)
	}
}
