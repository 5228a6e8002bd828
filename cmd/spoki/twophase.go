package main

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
)

// twoPhaseFeed is the live two-phase stage (twophase.Feed) as run wires
// it: its counters by the names the stats line and the collector read, and
// its start-up line.
type twoPhaseFeed struct {
	*twophase.Feed
	log *slog.Logger
	// The feed's counters (twophase.FeedCounters), one per cause.
	events, errors                              *atomic.Uint64
	dropSYNQueue, dropSessionQueue, dropPending *atomic.Uint64
}

// newTwoPhaseFeed returns a feed with the default table budget.
func newTwoPhaseFeed(timeout, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	return newTwoPhaseFeedMemory(timeout, twophase.DefaultMemory, linger, emit, log)
}

// newTwoPhaseFeedMemory returns a feed whose detector table takes memory
// bytes (--phase-memory), allocated now.
func newTwoPhaseFeedMemory(timeout time.Duration, memory byteSize, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	f := twophase.NewFeed(twophase.Config{Timeout: timeout, Memory: int64(memory)}, linger, emit)
	c := f.Counters()
	return &twoPhaseFeed{Feed: f, log: log, events: &c.Events, errors: &c.Errors,
		dropSYNQueue: &c.DropSYNQueue, dropSessionQueue: &c.DropSessionQueue, dropPending: &c.DropPending}
}

// logTable writes the start-up line of the detector's table: its size,
// the irregular SYN rate up to which it holds every phase one for the whole
// timeout, and the window a flood of one-off sources at 100k SYN/s leaves
// their entries (a repeat source's entries are not replaced by those). The
// figures are the detector's own, defaults applied.
func (f *twoPhaseFeed) logTable() {
	s := f.Stats()
	cfg := f.Config()
	secs := cfg.Timeout.Seconds()
	memory := byteSize(cfg.Memory)
	f.log.Info("two-phase table", "entries", s.Capacity, "bytes", s.Bytes, "phase_memory", memory.String(),
		"window_s", secs, "at_irregular_syn_per_s", int(float64(s.Capacity)/secs),
		"window_s_at_100k_syn_per_s", math.Round(float64(s.Capacity)/1e4)/10)
}

// dropped is the sum of the drops of every cause.
func (f *twoPhaseFeed) dropped() uint64 { return f.Counters().Dropped() }

// run detects until ctx ends, then handles what is queued.
func (f *twoPhaseFeed) run(ctx context.Context) { f.Run(ctx) }

// twoPhaseAttrs are the detector's figures in the stats line.
func twoPhaseAttrs(tp *twoPhaseFeed) []slog.Attr {
	s := tp.Stats()
	return []slog.Attr{
		slog.Uint64("two_phase_pairs", s.Pairs),
		slog.Int("two_phase_entries", s.Entries),
		slog.Uint64("two_phase_evicted_oneoff", s.EvictedOneOff),
		slog.Uint64("two_phase_evicted_repeat", s.EvictedRepeat),
		slog.Uint64("two_phase_rejected", s.Rejected),
		slog.Uint64("two_phase_expired", s.Expired),
		slog.Float64("two_phase_window_s", s.WindowOneOff.Seconds()),
		slog.Float64("two_phase_window_repeat_s", s.WindowRepeat.Seconds()),
		slog.Uint64("two_phase_drop_syn_queue", tp.dropSYNQueue.Load()),
		slog.Uint64("two_phase_drop_session_queue", tp.dropSessionQueue.Load()),
		slog.Uint64("two_phase_drop_pending", tp.dropPending.Load()),
	}
}
