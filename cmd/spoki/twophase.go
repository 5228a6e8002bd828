package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/records"
)

// twoPhaseQueue bounds the SYNs waiting for the detector; a full queue drops
// the newest and counts it.
const twoPhaseQueue = 1 << 12

// twoPhaseSessionQueue bounds the finished sessions waiting for the
// detector's goroutine.
const twoPhaseSessionQueue = 1 << 10

// twoPhasePending bounds the pairs waiting for phase two's session to end
// (each for at most the linger): a full map still writes the `phase_two`
// event and counts the pair whose `acked` event it cannot write. Pairs are
// rare (one per two-phase scan): 4096 waiting within a linger of about two
// minutes is some 30 pairs per second, and costs about 1 MiB.
const twoPhasePending = 1 << 12

// twoPhaseTick is how often the detector's goroutine publishes its stats;
// every twoPhaseSweepTicks it also sweeps the table and the pending map.
const (
	twoPhaseTick       = time.Second
	twoPhaseSweepTicks = 10
)

// twoPhaseFeed runs the live two-phase detector in its own goroutine, off
// the packet path: the netstack's sink hands it SYN records through a
// bounded queue, the Mux hands it finished sessions, and it writes
// `two_phase` events: one when phase two arrives (stage "phase_two"), and
// one more with the session's app_proto and payload once phase two's
// connection was accepted and ended (stage "acked").
type twoPhaseFeed struct {
	det      *twophase.Detector
	syns     chan records.Packet
	sessions chan records.Session
	emit     func(time.Time, []byte)
	log      *slog.Logger
	// pending maps phase two's flow to its pair until its session ends;
	// at most twoPhasePending.
	pending map[flowID]pendingPair
	linger  time.Duration
	// latest is the latest SYN time seen: the detector's clock, so that
	// expiry follows packet time as matching does.
	latest time.Time

	// Drops by cause: SYN queue full, session queue full, pending map full.
	dropSYNQueue, dropSessionQueue, dropPending atomic.Uint64
	events                                      atomic.Uint64
	errors                                      atomic.Uint64

	// detStats is the detector's Stats as of the last tick (the detector
	// itself belongs to run's goroutine).
	statsMu  sync.Mutex
	detStats twophase.Stats // +checklocks:statsMu
}

type flowID struct {
	remote, local netip.AddrPort
}

type pendingPair struct {
	pair twophase.Pair
	seen time.Time
}

// newTwoPhaseFeed returns a feed with the default table budget.
func newTwoPhaseFeed(timeout, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	return newTwoPhaseFeedMemory(timeout, twophase.DefaultMemory, linger, emit, log)
}

// newTwoPhaseFeedMemory returns a feed whose detector table takes memory
// bytes (--phase-memory), allocated now.
func newTwoPhaseFeedMemory(timeout time.Duration, memory byteSize, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	f := &twoPhaseFeed{
		det:      twophase.New(twophase.Config{Timeout: timeout, Memory: int64(memory)}),
		syns:     make(chan records.Packet, twoPhaseQueue),
		sessions: make(chan records.Session, twoPhaseSessionQueue),
		emit:     emit,
		log:      log,
		pending:  make(map[flowID]pendingPair),
		linger:   linger,
	}
	f.detStats = f.det.Stats()
	return f
}

// logTable writes the start-up line of the detector's table: its size,
// the irregular SYN rate up to which it holds every phase one for the whole
// timeout, and the window a flood of one-off sources at 100k SYN/s leaves
// their entries (a repeat source's entries are not replaced by those). The
// figures are the detector's own, defaults applied.
func (f *twoPhaseFeed) logTable() {
	s := f.Stats()
	cfg := f.det.Config()
	secs := cfg.Timeout.Seconds()
	memory := byteSize(cfg.Memory)
	f.log.Info("two-phase table", "entries", s.Capacity, "bytes", s.Bytes, "phase_memory", memory.String(),
		"window_s", secs, "at_irregular_syn_per_s", int(float64(s.Capacity)/secs),
		"window_s_at_100k_syn_per_s", math.Round(float64(s.Capacity)/1e4)/10)
}

// Stats returns the detector's counters as of its last tick.
func (f *twoPhaseFeed) Stats() twophase.Stats {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	return f.detStats
}

// dropped is the sum of the drops of every cause.
func (f *twoPhaseFeed) dropped() uint64 {
	return f.dropSYNQueue.Load() + f.dropSessionQueue.Load() + f.dropPending.Load()
}

func (f *twoPhaseFeed) publish() {
	s := f.det.Stats()
	f.statsMu.Lock()
	f.detStats = s
	f.statsMu.Unlock()
}

// SYN queues a SYN record; it never blocks.
func (f *twoPhaseFeed) SYN(p *records.Packet) {
	select {
	case f.syns <- *p:
	default:
		f.dropSYNQueue.Add(1)
	}
}

// Session queues a finished session; it never blocks.
func (f *twoPhaseFeed) Session(s *records.Session) {
	select {
	case f.sessions <- *s:
	default:
		f.dropSessionQueue.Add(1)
	}
}

// run detects until ctx ends, then handles what is queued.
func (f *twoPhaseFeed) run(ctx context.Context) {
	tick := time.NewTicker(twoPhaseTick)
	defer tick.Stop()
	defer f.publish()
	ticks := 0
	for {
		select {
		case p := <-f.syns:
			f.observe(&p)
		case s := <-f.sessions:
			f.session(&s)
		case now := <-tick.C:
			if ticks++; ticks%twoPhaseSweepTicks == 0 {
				f.sweep(now)
			}
			f.publish()
		case <-ctx.Done():
			for {
				select {
				case p := <-f.syns:
					f.observe(&p)
				case s := <-f.sessions:
					f.session(&s)
				default:
					return
				}
			}
		}
	}
}

// twoPhaseSweepStep is how many buckets (of 256 bytes) the sweep scans
// between two looks at the queues: some 20 µs, so that a table of any
// --phase-memory is swept without a pause that fills the SYN queue.
const twoPhaseSweepStep = 1 << 11

// sweep drops the table's expired phase ones (by packet time) and the
// pending pairs whose session never came (by wall time, as sessions end).
// Between steps of the table's sweep it handles what the queues hold.
func (f *twoPhaseFeed) sweep(now time.Time) {
	if !f.latest.IsZero() {
		for !f.det.ExpireSome(f.latest, twoPhaseSweepStep) {
			f.drain()
		}
	}
	for k, v := range f.pending {
		if now.Sub(v.seen) > f.linger {
			delete(f.pending, k)
		}
	}
}

// drain handles what the queues hold now, and no more.
func (f *twoPhaseFeed) drain() {
	for range len(f.syns) {
		p := <-f.syns
		f.observe(&p)
	}
	for range len(f.sessions) {
		s := <-f.sessions
		f.session(&s)
	}
}

func (f *twoPhaseFeed) observe(p *records.Packet) {
	if p.Time.After(f.latest) {
		f.latest = p.Time
	}
	pair, ok := f.det.Observe(p)
	if !ok {
		return
	}
	remote := netip.AddrPortFrom(pair.Src, pair.Two.SrcPort)
	local := netip.AddrPortFrom(pair.Dst, pair.DstPort)
	k := flowID{remote, local}
	if _, dup := f.pending[k]; dup || len(f.pending) < twoPhasePending {
		f.pending[k] = pendingPair{pair: pair, seen: pair.Two.Time}
	} else {
		f.dropPending.Add(1)
	}
	f.write(pair, "phase_two", nil)
}

func (f *twoPhaseFeed) session(s *records.Session) {
	k := flowID{s.Flow.Remote, s.Flow.Local}
	pp, ok := f.pending[k]
	if !ok {
		return
	}
	delete(f.pending, k)
	f.write(pp.pair, "acked", s)
}

// twoPhaseFields is the body of a `two_phase` event (spoki's own type,
// README.md#events).
type twoPhaseFields struct {
	Stage    string         `json:"stage"`
	PhaseOne twoPhaseOne    `json:"phase_one"`
	PhaseTwo twoPhaseTwo    `json:"phase_two"`
	DelayMS  float64        `json:"delay_ms"`
	Session  *twoPhaseAcked `json:"session,omitempty"`
}

type twoPhaseOne struct {
	Timestamp        time.Time `json:"timestamp"`
	SrcPort          uint16    `json:"src_port"`
	Seq              uint32    `json:"seq"`
	TTL              uint8     `json:"ttl"`
	IPID             uint16    `json:"ipid"`
	IrregularReasons []string  `json:"irregular_reasons"`
	Scanner          string    `json:"scanner"`
	UserID           uint32    `json:"userid"`
}

type twoPhaseTwo struct {
	Timestamp time.Time `json:"timestamp"`
	SrcPort   uint16    `json:"src_port"`
	Seq       uint32    `json:"seq"`
	UserID    uint32    `json:"userid"`
}

type twoPhaseAcked struct {
	AppProto string    `json:"app_proto"`
	Payload  []byte    `json:"payload"`
	End      time.Time `json:"end"`
}

func (f *twoPhaseFeed) write(pair twophase.Pair, stage string, s *records.Session) {
	fields := twoPhaseFields{
		Stage: stage,
		PhaseOne: twoPhaseOne{
			Timestamp: pair.One.Time.UTC(), SrcPort: pair.One.SrcPort, Seq: pair.One.Seq, TTL: pair.One.TTL,
			IPID: pair.One.IPID, IrregularReasons: pair.One.Reasons.Names(), Scanner: pair.One.Scanner.String(),
			UserID: pair.One.UserID,
		},
		PhaseTwo: twoPhaseTwo{Timestamp: pair.Two.Time.UTC(), SrcPort: pair.Two.SrcPort, Seq: pair.Two.Seq, UserID: pair.Two.UserID},
		DelayMS:  float64(pair.Delay().Microseconds()) / 1000,
	}
	t := pair.Two.Time
	if s != nil {
		fields.Session = &twoPhaseAcked{AppProto: s.AppProto, Payload: s.Payload, End: s.End.UTC()}
		t = s.End
	}
	flow := records.Flow{
		Remote: netip.AddrPortFrom(pair.Src, pair.Two.SrcPort),
		Local:  netip.AddrPortFrom(pair.Dst, pair.DstPort),
		UserID: pair.Two.UserID,
	}
	line, err := records.AppendEvent(nil, "two_phase", t, &flow, fields)
	if err != nil {
		f.errors.Add(1)
		return
	}
	f.events.Add(1)
	f.emit(t, line)
}

// maxPhaseMemory caps --phase-memory: the table is allocated at start, so
// a typo must not ask for the machine's memory.
const maxPhaseMemory = 16 << 30

// checkPhaseMemory is the range of --phase-memory, for validate and the
// config check alike.
func checkPhaseMemory(m byteSize) error {
	if m < twophase.MinMemory || m > maxPhaseMemory {
		lo, hi := byteSize(twophase.MinMemory), byteSize(maxPhaseMemory)
		return fmt.Errorf("%s out of range %s-%s", m.String(), lo.String(), hi.String())
	}
	return nil
}

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
