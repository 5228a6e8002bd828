package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/records"
)

// twoPhaseQueue bounds the SYNs waiting for the detector; a full queue drops
// the newest and counts it.
const twoPhaseQueue = 1 << 12

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
	// pending maps phase two's flow to its pair until its session ends.
	pending map[flowID]pendingPair
	linger  time.Duration

	dropped atomic.Uint64
	events  atomic.Uint64
	errors  atomic.Uint64
}

type flowID struct {
	remote, local netip.AddrPort
}

type pendingPair struct {
	pair twophase.Pair
	seen time.Time
}

func newTwoPhaseFeed(timeout, linger time.Duration, emit func(time.Time, []byte), log *slog.Logger) *twoPhaseFeed {
	return &twoPhaseFeed{
		det:      twophase.New(twophase.Config{Timeout: timeout}),
		syns:     make(chan records.Packet, twoPhaseQueue),
		sessions: make(chan records.Session, 1024),
		emit:     emit,
		log:      log,
		pending:  make(map[flowID]pendingPair),
		linger:   linger,
	}
}

// SYN queues a SYN record; it never blocks.
func (f *twoPhaseFeed) SYN(p *records.Packet) {
	select {
	case f.syns <- *p:
	default:
		f.dropped.Add(1)
	}
}

// Session queues a finished session; it never blocks.
func (f *twoPhaseFeed) Session(s *records.Session) {
	select {
	case f.sessions <- *s:
	default:
		f.dropped.Add(1)
	}
}

// run detects until ctx ends, then handles what is queued.
func (f *twoPhaseFeed) run(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case p := <-f.syns:
			f.observe(&p)
		case s := <-f.sessions:
			f.session(&s)
		case now := <-tick.C:
			for k, v := range f.pending {
				if now.Sub(v.seen) > f.linger {
					delete(f.pending, k)
				}
			}
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

func (f *twoPhaseFeed) observe(p *records.Packet) {
	pair, ok := f.det.Observe(p)
	if !ok {
		return
	}
	remote := netip.AddrPortFrom(pair.Src, pair.Two.SrcPort)
	local := netip.AddrPortFrom(pair.Dst, pair.DstPort)
	// The map is bounded like the detector: a pair waits at most linger.
	if len(f.pending) < twophase.DefaultMaxEntries {
		f.pending[flowID{remote, local}] = pendingPair{pair: pair, seen: pair.Two.Time}
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

// twoPhaseFields is the body of a `two_phase` event (contract addition).
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
