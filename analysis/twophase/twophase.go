// Package twophase detects two-phase scans as they happen: an answered
// irregular SYN (the paper's rules: IP ID 54321, TTL > 200 or no TCP
// options) followed, from the same source to the same address and port and
// within the phase timeout, by a regular SYN. It is the live counterpart of
// assemble's rsyn_to_isyn rule (spoki-eval §2.3), with the same window:
// phase two may come from one second before phase one's answer to just
// under the timeout after it, counted in whole seconds.
//
// Memory is bounded: at most MaxEntries phase-one SYNs are kept, the oldest
// evicted first (counted), and entries older than the timeout are dropped
// as time passes. A Detector is not safe for concurrent use: one goroutine
// feeds it, off the packet path.
package twophase

import (
	"net/netip"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Defaults for Config.
const (
	DefaultTimeout    = 600 * time.Second
	DefaultMaxEntries = 1 << 18
)

// Config configures a Detector. Zero values mean the defaults.
type Config struct {
	// Timeout is the phase timeout: the longest delay from phase one to
	// phase two.
	Timeout time.Duration
	// MaxEntries caps the phase-one SYNs kept.
	MaxEntries int
}

// Phase describes one SYN of a pair.
type Phase struct {
	Time      time.Time
	SrcPort   uint16
	Seq       uint32
	TTL       uint8
	IPID      uint16
	Reasons   records.Reasons
	Scanner   records.Scanner
	UserID    uint32
	Irregular bool
}

// Pair is a detected two-phase scan.
type Pair struct {
	Src, Dst netip.Addr
	DstPort  uint16
	One, Two Phase
}

// Delay is the time from phase one to phase two.
func (p Pair) Delay() time.Duration { return p.Two.Time.Sub(p.One.Time) }

type key struct {
	src, dst [16]byte
	port     uint16
}

type entry struct {
	k     key
	phase Phase
	seq   uint64 // insertion number; stale queue slots are skipped
}

// Stats counts what the Detector did.
type Stats struct {
	// Pairs is the number of two-phase pairs found.
	Pairs uint64
	// Evicted counts phase-one SYNs dropped because MaxEntries were kept.
	Evicted uint64
	// Expired counts phase-one SYNs dropped after the timeout.
	Expired uint64
	// Entries is the number kept now.
	Entries int
}

// Detector matches regular SYNs to earlier irregular ones.
type Detector struct {
	cfg   Config
	m     map[key]entry
	queue []entry // insertion order, for expiry and eviction
	head  int
	next  uint64
	stats Stats
}

// New returns a Detector.
func New(cfg Config) *Detector {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	return &Detector{cfg: cfg, m: make(map[key]entry)}
}

// Stats returns the counters.
func (d *Detector) Stats() Stats {
	s := d.stats
	s.Entries = len(d.m)
	return s
}

// Observe feeds one packet record; only SYNs matter. It returns the pair
// when p is the regular SYN that completes one.
func (d *Detector) Observe(p *records.Packet) (Pair, bool) {
	if !p.IsSYN() {
		return Pair{}, false
	}
	d.expire(p.Time)
	irregular, reasons := records.Irregular(p)
	k := key{src: p.Src.As16(), dst: p.Dst.As16(), port: p.DstPort}
	ph := Phase{
		Time: p.Time, SrcPort: p.SrcPort, Seq: p.Seq, TTL: p.TTL, IPID: p.IPID,
		Reasons: reasons, Scanner: records.Fingerprint(p), UserID: p.UserID, Irregular: irregular,
	}
	if irregular {
		// Only an answered SYN can be phase one: the scanner came back
		// because it got a SYN-ACK (assemble requires the confirmation).
		if !p.Probed {
			return Pair{}, false
		}
		d.add(k, ph)
		return Pair{}, false
	}
	e, ok := d.m[k]
	if !ok || !within(e.phase.Time, p.Time, d.cfg.Timeout) {
		return Pair{}, false
	}
	delete(d.m, k)
	d.stats.Pairs++
	return Pair{Src: p.Src, Dst: p.Dst, DstPort: p.DstPort, One: e.phase, Two: ph}, true
}

// within is assemble's window on whole seconds: t ∈ [t1−1 s, t1+timeout).
func within(t1, t time.Time, timeout time.Duration) bool {
	a, b := t1.Unix(), t.Unix()
	if a <= b {
		return b-a < int64(timeout/time.Second)
	}
	return a-b <= 1
}

func (d *Detector) add(k key, ph Phase) {
	if _, ok := d.m[k]; !ok && len(d.m) >= d.cfg.MaxEntries {
		d.evictOldest()
	}
	d.next++
	e := entry{k: k, phase: ph, seq: d.next}
	// A newer irregular SYN replaces the older one: its answer is the one
	// the scanner's second phase follows.
	d.m[k] = e
	d.queue = append(d.queue, e)
	d.compact()
}

// expire drops phase-one SYNs whose window has closed by now.
func (d *Detector) expire(now time.Time) {
	for d.head < len(d.queue) {
		e := d.queue[d.head]
		cur, ok := d.m[e.k]
		if !ok || cur.seq != e.seq {
			d.head++
			continue
		}
		if now.Unix()-e.phase.Time.Unix() < int64(d.cfg.Timeout/time.Second) {
			break
		}
		delete(d.m, e.k)
		d.stats.Expired++
		d.head++
	}
	d.compact()
}

func (d *Detector) evictOldest() {
	for d.head < len(d.queue) {
		e := d.queue[d.head]
		d.head++
		if cur, ok := d.m[e.k]; ok && cur.seq == e.seq {
			delete(d.m, e.k)
			d.stats.Evicted++
			return
		}
	}
}

// compact reclaims the consumed front of the queue once it dominates, so
// the queue stays within a small factor of the map.
func (d *Detector) compact() {
	if live := len(d.queue) - d.head; live > 2*d.cfg.MaxEntries+1024 {
		// Replaced entries pile up behind a live one: rebuild the queue
		// from the map, in insertion order, so it never exceeds twice the
		// cap.
		q := d.queue[:0:0]
		for _, e := range d.queue[d.head:] {
			if cur, ok := d.m[e.k]; ok && cur.seq == e.seq {
				q = append(q, e)
			}
		}
		d.queue, d.head = q, 0
		return
	}
	if d.head > 1024 && d.head*2 > len(d.queue) {
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue = d.queue[:n]
		d.head = 0
	}
}
