package twophase

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// FeedQueue bounds the SYNs waiting for the detector; a full queue drops
// the newest and counts it.
const FeedQueue = 1 << 12

// FeedSessionQueue bounds the finished sessions waiting for the
// detector's goroutine.
const FeedSessionQueue = 1 << 10

// FeedPending bounds the pairs waiting for phase two's session to end
// (each for at most the linger): a full map still writes the `phase_two`
// event and counts the pair whose `acked` event it cannot write. Pairs are
// rare (one per two-phase scan): 4096 waiting within a linger of about two
// minutes is some 30 pairs per second, and costs about 1 MiB.
const FeedPending = 1 << 12

// feedTick is how often the feed's goroutine publishes its stats; every
// feedSweepTicks it also sweeps the table and the pending map.
const (
	feedTick       = time.Second
	feedSweepTicks = 10
)

// feedSweepStep is how many buckets (of 256 bytes) the sweep scans
// between two looks at the queues: some 20 µs, so that a table of any
// --phase-memory is swept without a pause that fills the SYN queue.
const feedSweepStep = 1 << 11

// FeedCounters counts what a Feed wrote and lost, one counter per cause.
// The Feed adds to them; readers Load them from any goroutine.
type FeedCounters struct {
	// Events counts the `two_phase` events written.
	Events atomic.Uint64
	// Alerts counts the `alert` events written (SetAlerts).
	Alerts atomic.Uint64
	// Errors counts the events that could not be encoded.
	Errors atomic.Uint64
	// DropSYNQueue counts SYNs dropped because the SYN queue was full.
	DropSYNQueue atomic.Uint64
	// DropSessionQueue counts sessions dropped because the session queue
	// was full.
	DropSessionQueue atomic.Uint64
	// DropPending counts pairs whose `acked` event was not written because
	// the pending map was full.
	DropPending atomic.Uint64
}

// Dropped is the sum of the drops of every cause.
func (c *FeedCounters) Dropped() uint64 {
	return c.DropSYNQueue.Load() + c.DropSessionQueue.Load() + c.DropPending.Load()
}

// Feed runs the live two-phase detector in its own goroutine (Run), off
// the packet path: the netstack's sink hands it SYN records through a
// bounded queue (SYN), the Mux hands it finished sessions (Session), and it
// writes `two_phase` events: one when phase two arrives (stage
// "phase_two"), and one more with the session's app_proto and payload once
// phase two's connection was accepted and ended (stage "acked").
type Feed struct {
	det      *Detector
	syns     chan records.Packet
	sessions chan records.Session
	emit     func(time.Time, []byte)
	// pending maps phase two's flow to its pair until its session ends;
	// at most FeedPending.
	pending map[flowID]pendingPair
	linger  time.Duration
	// alerts says whether a phase_two event is followed by an alert event
	// (SetAlerts).
	alerts bool
	// latest is the latest SYN time seen: the detector's clock, so that
	// expiry follows packet time as matching does.
	latest time.Time

	counters FeedCounters

	// detStats is the detector's Stats as of the last tick (the detector
	// itself belongs to Run's goroutine).
	statsMu  sync.Mutex
	detStats Stats // +checklocks:statsMu
}

type flowID struct {
	remote, local netip.AddrPort
}

type pendingPair struct {
	pair Pair
	seen time.Time
}

// NewFeed returns a feed whose detector is New(cfg), allocated now. A pair
// waits at most linger (wall time) for phase two's session to end; emit
// receives each event's time and its JSON line, on Run's goroutine.
func NewFeed(cfg Config, linger time.Duration, emit func(time.Time, []byte)) *Feed {
	f := &Feed{
		det:      New(cfg),
		syns:     make(chan records.Packet, FeedQueue),
		sessions: make(chan records.Session, FeedSessionQueue),
		emit:     emit,
		pending:  make(map[flowID]pendingPair),
		linger:   linger,
	}
	f.detStats = f.det.Stats()
	return f
}

// SetAlerts turns the alert event (records.AlertTwoPhase) that follows
// each phase_two event on or off (off by default); call it before Run.
func (f *Feed) SetAlerts(on bool) { f.alerts = on }

// Config returns the detector's configuration, defaults filled in.
func (f *Feed) Config() Config { return f.det.Config() }

// Stats returns the detector's counters as of the feed's last tick.
func (f *Feed) Stats() Stats {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	return f.detStats
}

// Counters returns the feed's own counters, live.
func (f *Feed) Counters() *FeedCounters { return &f.counters }

func (f *Feed) publish() {
	s := f.det.Stats()
	f.statsMu.Lock()
	f.detStats = s
	f.statsMu.Unlock()
}

// SYN queues a SYN record; it never blocks.
func (f *Feed) SYN(p *records.Packet) {
	select {
	case f.syns <- *p:
	default:
		f.counters.DropSYNQueue.Add(1)
	}
}

// Session queues a finished session; it never blocks.
func (f *Feed) Session(s *records.Session) {
	select {
	case f.sessions <- *s:
	default:
		f.counters.DropSessionQueue.Add(1)
	}
}

// Run detects until ctx ends, then handles what is queued.
func (f *Feed) Run(ctx context.Context) {
	tick := time.NewTicker(feedTick)
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
			if ticks++; ticks%feedSweepTicks == 0 {
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

// sweep drops the table's expired phase ones (by packet time) and the
// pending pairs whose session never came (by wall time, as sessions end).
// Between steps of the table's sweep it handles what the queues hold.
func (f *Feed) sweep(now time.Time) {
	if !f.latest.IsZero() {
		for !f.det.ExpireSome(f.latest, feedSweepStep) {
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
func (f *Feed) drain() {
	for range len(f.syns) {
		p := <-f.syns
		f.observe(&p)
	}
	for range len(f.sessions) {
		s := <-f.sessions
		f.session(&s)
	}
}

func (f *Feed) observe(p *records.Packet) {
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
	if _, dup := f.pending[k]; dup || len(f.pending) < FeedPending {
		f.pending[k] = pendingPair{pair: pair, seen: pair.Two.Time}
	} else {
		f.counters.DropPending.Add(1)
	}
	f.write(pair, "phase_two", nil)
}

func (f *Feed) session(s *records.Session) {
	k := flowID{s.Flow.Remote, s.Flow.Local}
	pp, ok := f.pending[k]
	if !ok {
		return
	}
	delete(f.pending, k)
	f.write(pp.pair, "acked", s)
}

// eventFields is the body of a `two_phase` event (spoki's own type,
// README.md#events).
type eventFields struct {
	Stage    string         `json:"stage"`
	PhaseOne eventOne       `json:"phase_one"`
	PhaseTwo eventTwo       `json:"phase_two"`
	DelayMS  records.Millis `json:"delay_ms"`
	Session  *eventAcked    `json:"session,omitempty"`
}

type eventOne struct {
	Timestamp        records.EventTime `json:"timestamp"`
	SrcPort          uint16            `json:"src_port"`
	Seq              uint32            `json:"seq"`
	TTL              uint8             `json:"ttl"`
	IPID             uint16            `json:"ipid"`
	IrregularReasons []string          `json:"irregular_reasons"`
	Scanner          string            `json:"scanner"`
	UserID           uint32            `json:"userid"`
}

type eventTwo struct {
	Timestamp records.EventTime `json:"timestamp"`
	SrcPort   uint16            `json:"src_port"`
	Seq       uint32            `json:"seq"`
	UserID    uint32            `json:"userid"`
}

type eventAcked struct {
	AppProto string            `json:"app_proto"`
	Payload  []byte            `json:"payload"`
	End      records.EventTime `json:"end"`
}

func (f *Feed) write(pair Pair, stage string, s *records.Session) {
	t, line, err := PairEvent(pair, stage, s)
	if err != nil {
		f.counters.Errors.Add(1)
		return
	}
	f.counters.Events.Add(1)
	f.emit(t, line)
	if !f.alerts || s != nil {
		return
	}
	// One alert per pair, when phase two arrives, as the rule fires.
	t, line, err = PairAlert(pair)
	if err != nil {
		f.counters.Errors.Add(1)
		return
	}
	f.counters.Alerts.Add(1)
	f.emit(t, line)
}

// PairEvent returns the `two_phase` event of pair at stage ("phase_two",
// or "acked" with phase two's session s) and its time: the line the Feed
// writes, and that `spoki twophase` publishes.
func PairEvent(pair Pair, stage string, s *records.Session) (time.Time, []byte, error) {
	t, flow, fields := pairFields(pair, stage, s)
	line, err := records.AppendEvent(nil, "two_phase", t, &flow, fields)
	return t, line, err
}

// PairAlert returns the EVE `alert` event of pair (records.AlertTwoPhase),
// written once per pair beside its phase_two event.
func PairAlert(pair Pair) (time.Time, []byte, error) {
	t, flow, fields := pairFields(pair, "phase_two", nil)
	line, err := records.AppendAlertEvent(nil, t, &flow, &records.AlertTwoPhase, "", "two_phase", fields)
	return t, line, err
}

// pairFields are the time, the flow and the fields of pair's events.
func pairFields(pair Pair, stage string, s *records.Session) (time.Time, records.Flow, eventFields) {
	fields := eventFields{
		Stage: stage,
		PhaseOne: eventOne{
			Timestamp: records.EventTime{Time: pair.One.Time}, SrcPort: pair.One.SrcPort, Seq: pair.One.Seq, TTL: pair.One.TTL,
			IPID: pair.One.IPID, IrregularReasons: pair.One.Reasons.Names(), Scanner: pair.One.Scanner.String(),
			UserID: pair.One.UserID,
		},
		PhaseTwo: eventTwo{Timestamp: records.EventTime{Time: pair.Two.Time}, SrcPort: pair.Two.SrcPort, Seq: pair.Two.Seq, UserID: pair.Two.UserID},
		DelayMS:  records.Millis(float64(pair.Delay().Microseconds()) / 1000),
	}
	t := pair.Two.Time
	if s != nil {
		fields.Session = &eventAcked{AppProto: s.AppProto, Payload: s.Payload, End: records.EventTime{Time: s.End}}
		t = s.End
	}
	flow := records.Flow{
		Remote: netip.AddrPortFrom(pair.Src, pair.Two.SrcPort),
		Local:  netip.AddrPortFrom(pair.Dst, pair.DstPort),
		UserID: pair.Two.UserID,
		ISN:    pair.Two.Seq,
	}
	return t, flow, fields
}
