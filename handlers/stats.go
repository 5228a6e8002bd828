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
	// Alerts counts the alert events written beside downloader events
	// (MuxConfig.Alerts).
	Alerts atomic.Uint64

	mu        sync.Mutex
	byHandler map[string]uint64 // +checklocks:mu; sessions by app_proto
}

// StatsSnapshot is a copy of Stats. Its fields are the values of the
// Stats counters of the same name; their tags describe them for the stats
// line and the metrics (package stats).
type StatsSnapshot struct {
	// Sessions is the sum of ByHandler, which the metrics carry.
	Sessions          uint64 `line:"sessions" metric:"-"`
	FirstDataTimeouts uint64 `line:"first_data_timeouts" metric:"handlers_first_data_total{outcome=timeout}" help:"Connections dispatched without client data, by outcome: timeout (nothing within the first-data wait) or closed (EOF or reset first)."`
	FirstDataClosed   uint64 `line:"first_data_closed" metric:"handlers_first_data_total{outcome=closed}"`
	Errors            uint64 `line:"handler_errors" metric:"handlers_errors_total" help:"Handlers that returned an error (panics excluded)."`
	BudgetExceeded    uint64 `line:"budget_exceeded" metric:"handlers_budget_exceeded_total" help:"Handler errors caused by the Mux's request, idle, total or byte budget."`
	Panics            uint64 `line:"panics" metric:"handlers_panics_total" help:"Handler or content-matcher panics, each logged and its connection reset."`
	BudgetRequest     uint64 `line:"budget_request" metric:"handlers_budget_cuts_total{budget=request}" help:"Connections a Mux budget cut short, by budget: request (first request not complete within --request-timeout: slowloris), idle, total, bytes."`
	BudgetIdle        uint64 `line:"budget_idle" metric:"handlers_budget_cuts_total{budget=idle}"`
	BudgetTotal       uint64 `line:"budget_total" metric:"handlers_budget_cuts_total{budget=total}"`
	BudgetBytes       uint64 `line:"budget_bytes" metric:"handlers_budget_cuts_total{budget=bytes}"`
	Events            uint64 `line:"events" metric:"handlers_events_total" help:"Extra events handlers raised (downloader, ...)."`
	EventsDropped     uint64 `line:"events_dropped" metric:"handlers_events_dropped_total" help:"Extra events not written: no sink, per-connection cap, or encoding failure."`
	Alerts            uint64 `line:"alerts" metric:"handlers_alerts_total" help:"Alert events written beside downloader events (--alerts)."`
	// ByHandler counts sessions by app_proto (handler name); the empty name
	// counts content matchers that panicked before a handler was chosen.
	ByHandler map[string]uint64 `line:"sessions_by" metric:"handlers_sessions_total{app_proto}" help:"Session events emitted, by app_proto (the handler that served them)."`
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
		Alerts:            s.Alerts.Load(),
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
