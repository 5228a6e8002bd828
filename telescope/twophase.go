package telescope

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/config"
)

// twoPhaseFeed is the live two-phase stage (twophase.Feed) as run wires
// it: its counters by the names the stats line and the collector read, and
// its start-up line.
type twoPhaseFeed struct {
	*twophase.Feed
	log *slog.Logger
	// The feed's counters (twophase.FeedCounters), one per cause.
	events, errors, alerts                      *atomic.Uint64
	dropSYNQueue, dropSessionQueue, dropPending *atomic.Uint64
}

// newTwoPhaseFeed returns a feed with the default table budget.
func newTwoPhaseFeed(timeout, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	return newTwoPhaseFeedMemory(timeout, twophase.DefaultMemory, linger, emit, log)
}

// newTwoPhaseFeedMemory returns a feed whose detector table takes memory
// bytes (--phase-memory), allocated now.
func newTwoPhaseFeedMemory(timeout time.Duration, memory config.Size, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	f := twophase.NewFeed(twophase.Config{Timeout: timeout, Memory: int64(memory)}, linger, emit)
	c := f.Counters()
	return &twoPhaseFeed{Feed: f, log: log, events: &c.Events, errors: &c.Errors, alerts: &c.Alerts,
		dropSYNQueue: &c.DropSYNQueue, dropSessionQueue: &c.DropSessionQueue, dropPending: &c.DropPending}
}

// logTable writes the start-up line of the detector's table: its size,
// the irregular SYN rate up to which it holds every phase one for the whole
// timeout, and the window a flood of one-off sources at 100k SYN/s leaves
// their entries (a repeat source's entries are not replaced by those), and
// the SYN queue ahead of it (IPv4 SYNs; an IPv6 SYN takes two slots), of
// which only the hot ring is resident while the detector keeps up. The
// figures are the detector's own, defaults applied.
func (f *twoPhaseFeed) logTable() {
	s := f.Stats()
	cfg := f.Config()
	secs := cfg.Timeout.Seconds()
	memory := config.Size(cfg.Memory)
	f.log.Info("two-phase table", "entries", s.Capacity, "bytes", s.Bytes, "phase_memory", memory.String(),
		"window_s", secs, "at_irregular_syn_per_s", int(float64(s.Capacity)/secs),
		"window_s_at_100k_syn_per_s", math.Round(float64(s.Capacity)/1e4)/10,
		"syn_queue", twophase.FeedQueue, "syn_queue_bytes", twophase.FeedQueue*twophase.SlotBytes,
		"syn_queue_resident_bytes", twophase.FeedQueueHot*twophase.SlotBytes)
}

// dropped is the sum of the drops of every cause.
func (f *twoPhaseFeed) dropped() uint64 { return f.Counters().Dropped() }

// run detects until ctx ends, then handles what is queued.
func (f *twoPhaseFeed) run(ctx context.Context) { f.Run(ctx) }
