package twophase

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// FeedQueue is the number of 32-byte slots (SlotBytes) of the SYN queue,
// mapped outside the Go heap at start: a hot ring of FeedQueueHot slots
// (512 KiB, resident), which serves a detector that keeps up, and a cold
// one of the rest (4 MiB), resident only while a backlog needs it and
// given back once the detector caught up. An IPv4 SYN takes one slot, an
// IPv6 SYN two, and only the SYNs the detector can use are queued (not
// unanswered irregular ones). So the detector's goroutine may be kept from
// running (short of CPU) for 2.9 s at 50,000 IPv4 SYN/s, 1.5 s at 100,000,
// before a SYN is lost; a full queue drops the newest and counts it
// (DropSYNQueue).
const FeedQueue = FeedQueueHot + 1<<17

// FeedQueueHot is the number of slots of the SYN queue's hot ring: 330 ms
// at 50,000 SYN/s.
const FeedQueueHot = 1 << 14

// FeedSessionQueue bounds the finished sessions waiting for the detector's
// goroutine. A session whose pair is pending is resolved at once, on the
// caller's goroutine; only one that ended before the detector caught up
// with the SYNs queued ahead of it waits here (their phase two may still be
// queued). A full queue drops the newest and counts it (DropSessionQueue).
const FeedSessionQueue = 1 << 12

// FeedPending bounds the pairs waiting for phase two's session to end
// (each for at most the linger): a pair still waiting when FeedPending
// newer ones have come gives way and is counted (DropPending; its
// phase_two event was written, its acked one is not). Pairs are rare (one
// per two-phase scan), and a pair waits only as long as its connection
// lasts (seconds): made-up pairs (spoofed sources never complete a
// handshake) must come at 4096 within that time to push one out, where a
// map that refused the newest was kept full by some 30 per second over the
// linger of about two minutes. It costs about 1 MiB.
const FeedPending = 1 << 12

// feedTick is how often the feed's goroutine publishes its stats; every
// feedSweepTicks it also sweeps the table and the pending map.
const (
	feedTick       = time.Second
	feedSweepTicks = 10
)

// feedPoll is how long the detector sleeps between two drains of the SYN
// queue while SYNs keep coming, so that a flood costs it a wake-up per
// batch (some 500 SYNs at 100,000 SYN/s) instead of one per SYN; an idle
// detector sleeps until the next SYN wakes it.
const feedPoll = 5 * time.Millisecond

// feedPublishEvery is how many SYNs the detector takes from the queue
// before it frees their slots for the readers.
const feedPublishEvery = 1 << 10

// feedBatch is how many SYNs the detector takes from the queue before it
// observes them: it hashes them all, then loads their cache lines (touch)
// before it handles the first, so that the misses of a batch of random
// spoofed sources overlap instead of coming one after the other.
const feedBatch = 32

// feedSessionSlack is how much later than a session's handshake the
// detector's latest observed SYN must be for the session to be
// resolved at once (its SYN, queued before the handshake's ACK was read,
// was then observed); a session that ended sooner waits in the session
// queue until the detector has taken the SYNs queued ahead of it.
const feedSessionSlack = 100 * time.Millisecond

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
// bounded, preallocated queue (SYN), the Mux hands it finished sessions
// (Session), and it writes `two_phase` events: one when phase two arrives
// (stage "phase_two"), and one more with the session's app_proto and
// payload once phase two's connection was accepted and ended (stage
// "acked").
type Feed struct {
	det *Detector
	q   *synRings
	// idle is set while Run sleeps with an empty SYN queue; the SYN that
	// finds it set wakes Run through wake.
	idle     atomic.Bool
	wake     chan struct{}
	sessions chan records.Session
	emit     func(time.Time, []byte)
	// seen is the latest SYN time the detector took from the queue (Unix
	// nanoseconds), which Session compares with a handshake's time.
	seen   atomic.Int64
	linger time.Duration
	// alerts says whether a phase_two event is followed by an alert event
	// (SetAlerts).
	alerts bool
	// latest is the latest SYN time seen: the detector's clock, so that
	// expiry follows packet time as matching does.
	latest time.Time

	// pending maps phase two's flow to its pair until its session ends.
	// order holds the keys of the last FeedPending pairs, oldest first (a
	// ring), so that the map holds at most FeedPending.
	pendMu  sync.Mutex
	pending map[flowID]pendingPair // +checklocks:pendMu
	order   []pendingKey           // +checklocks:pendMu
	orderAt int                    // +checklocks:pendMu
	orderN  int                    // +checklocks:pendMu
	pendSeq uint64                 // +checklocks:pendMu

	counters FeedCounters

	// detStats is the detector's Stats as of the last tick (the detector
	// itself belongs to Run's goroutine).
	statsMu  sync.Mutex
	detStats Stats // +checklocks:statsMu

	// batch and keys are the SYNs drainSYNs took and their keys (Run's
	// goroutine's own).
	batch [feedBatch]synRec
	keys  [feedBatch]key
}

type flowID struct {
	remote, local netip.AddrPort
}

type pendingPair struct {
	pair Pair
	seen time.Time
	seq  uint64
}

// pendingKey is one entry of the pending map's order: seq tells a key
// still waiting from one resolved or replaced since.
type pendingKey struct {
	k   flowID
	seq uint64
}

// NewFeed returns a feed whose detector is New(cfg), allocated now, with
// its SYN queue (FeedQueue slots). A pair waits at most linger (wall time)
// for phase two's session to end; emit receives each event's time and its
// JSON line, on Run's goroutine or, for an acked event, on Session's
// caller's.
func NewFeed(cfg Config, linger time.Duration, emit func(time.Time, []byte)) *Feed {
	return newFeed(cfg, FeedQueueHot, FeedQueue-FeedQueueHot, linger, emit)
}

func newFeed(cfg Config, hot, cold int, linger time.Duration, emit func(time.Time, []byte)) *Feed {
	q, free := newSynRings(hot, cold)
	f := &Feed{
		det:      New(cfg),
		q:        q,
		wake:     make(chan struct{}, 1),
		sessions: make(chan records.Session, FeedSessionQueue),
		emit:     emit,
		pending:  make(map[flowID]pendingPair),
		order:    make([]pendingKey, FeedPending),
		linger:   linger,
	}
	runtime.AddCleanup(q, func(f func()) { f() }, free)
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

// SYN queues what the detector needs of a SYN record, if it can use it
// (an answered irregular SYN, or a regular one); it never blocks and
// allocates nothing. Any number of goroutines may call it.
func (f *Feed) SYN(p *records.Packet) {
	if !p.IsSYN() {
		return
	}
	irregular, reasons, ok := usable(p)
	if !ok {
		return
	}
	if !f.q.put(p, irregular, reasons) {
		f.counters.DropSYNQueue.Add(1)
		return
	}
	if f.idle.Load() && f.idle.CompareAndSwap(true, false) {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// Session resolves a finished session: if its pair waits, it writes the
// acked event now, on the caller's goroutine; if its SYN may still be in
// the SYN queue, it queues the session for the detector. It never blocks.
func (f *Feed) Session(s *records.Session) {
	if f.resolve(s) {
		return
	}
	if f.seen.Load()-s.Flow.Accepted.UnixNano() >= int64(feedSessionSlack) {
		// Its SYN was observed: it paired with nothing.
		return
	}
	select {
	case f.sessions <- *s:
	default:
		f.counters.DropSessionQueue.Add(1)
	}
}

// resolve writes the acked event of s if its pair waits.
func (f *Feed) resolve(s *records.Session) bool {
	k := flowID{s.Flow.Remote, s.Flow.Local}
	f.pendMu.Lock()
	pp, ok := f.pending[k]
	if ok {
		delete(f.pending, k)
	}
	f.pendMu.Unlock()
	if ok {
		f.write(pp.pair, "acked", s)
	}
	return ok
}

// Run detects until ctx ends, then handles what is queued.
func (f *Feed) Run(ctx context.Context) {
	tick := time.NewTicker(feedTick)
	defer tick.Stop()
	poll := time.NewTimer(feedPoll)
	poll.Stop()
	defer poll.Stop()
	defer f.publish()
	ticks := 0
	for {
		var pollC <-chan time.Time
		if f.drainSYNs() > 0 {
			// SYNs keep coming: take the next batch after feedPoll.
			poll.Reset(feedPoll)
			pollC = poll.C
		} else {
			f.idle.Store(true)
			if f.q.ready() {
				// A SYN came before idle was set: it woke no one.
				f.idle.Store(false)
				continue
			}
		}
		select {
		case <-pollC:
		case <-f.wake:
		case s := <-f.sessions:
			// Its SYN was queued before it ended: take the SYNs first.
			f.drainSYNs()
			f.session(&s)
		case now := <-tick.C:
			if ticks++; ticks%feedSweepTicks == 0 {
				f.sweep(now)
			}
			f.publish()
		case <-ctx.Done():
			f.idle.Store(false)
			f.drain()
			return
		}
		f.idle.Store(false)
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
	f.pendMu.Lock()
	defer f.pendMu.Unlock()
	for k, v := range f.pending {
		if now.Sub(v.seen) > f.linger {
			delete(f.pending, k)
		}
	}
}

// drain handles what the queues hold now.
func (f *Feed) drain() {
	f.drainSYNs()
	for range len(f.sessions) {
		s := <-f.sessions
		f.session(&s)
	}
}

// drainSYNs observes every SYN ready in the queue and returns their number.
func (f *Feed) drainSYNs() int {
	n := 0
	for {
		// The slots are free once get copied them out.
		k := 0
		for k < len(f.batch) && f.q.get(&f.batch[k]) {
			k++
			if n++; n%feedPublishEvery == 0 {
				f.q.publish()
			}
		}
		if k == 0 {
			break
		}
		f.observeBatch(k)
	}
	f.q.publish()
	if f.q.closeCold() {
		// The backlog is gone: take what the cold ring's last writers
		// left, and give its pages back.
		for {
			k := 0
			for k < len(f.batch) && f.q.cold.get(&f.batch[k]) {
				k++
			}
			if k == 0 {
				break
			}
			n += k
			f.observeBatch(k)
		}
		f.q.reopenCold()
	}
	if n > 0 {
		f.seen.Store(f.latest.UnixNano())
	}
	return n
}

// observeBatch observes the first n SYNs of f.batch, in order: their keys
// first, then a load of each cache line they will read (table.touch), then
// each SYN.
func (f *Feed) observeBatch(n int) {
	recs, keys := f.batch[:n], f.keys[:n]
	t := &f.det.t
	for i := range recs {
		keys[i] = t.keyOf(&recs[i])
	}
	var x uint32
	for i := range recs {
		x ^= t.touch(&keys[i], recs[i].irregular)
	}
	f.det.touched ^= x
	for i := range recs {
		f.observeKey(&recs[i], &keys[i])
	}
}

func (f *Feed) observe(p *synRec) {
	k := f.det.t.keyOf(p)
	f.observeKey(p, &k)
}

// observeKey is observe of a SYN whose key is k.
func (f *Feed) observeKey(p *synRec, k *key) {
	if p.t.After(f.latest) {
		f.latest = p.t
	}
	pair, ok := f.det.observeKey(p, k)
	if !ok {
		return
	}
	remote := netip.AddrPortFrom(pair.Src, pair.Two.SrcPort)
	local := netip.AddrPortFrom(pair.Dst, pair.DstPort)
	f.addPending(flowID{remote, local}, pair)
	f.write(pair, "phase_two", nil)
}

// observePacket is observe of a whole record, as SYN would queue it.
func (f *Feed) observePacket(p *records.Packet) {
	if !p.IsSYN() {
		return
	}
	irregular, reasons, ok := usable(p)
	if !ok {
		return
	}
	r := recOf(p, irregular, reasons)
	f.observe(&r)
}

// addPending keeps pair until phase two's session ends; the pair made
// FeedPending pairs ago gives way if it still waits, counted.
func (f *Feed) addPending(k flowID, pair Pair) {
	f.pendMu.Lock()
	defer f.pendMu.Unlock()
	if f.orderN == len(f.order) {
		// The oldest key makes room: its pair still waits (counted), or
		// it was resolved, replaced or swept since.
		old := f.order[f.orderAt]
		f.orderAt = (f.orderAt + 1) % len(f.order)
		f.orderN--
		if v, ok := f.pending[old.k]; ok && v.seq == old.seq {
			delete(f.pending, old.k)
			f.counters.DropPending.Add(1)
		}
	}
	f.pendSeq++
	f.pending[k] = pendingPair{pair: pair, seen: pair.Two.Time, seq: f.pendSeq}
	f.order[(f.orderAt+f.orderN)%len(f.order)] = pendingKey{k, f.pendSeq}
	f.orderN++
}

// session handles a session the detector queued for later: its pair may
// have come since.
func (f *Feed) session(s *records.Session) { f.resolve(s) }

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
