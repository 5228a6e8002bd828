// Package twophase detects two-phase scans as they happen: an answered
// irregular SYN (the paper's rules: IP ID 54321, TTL > 200 or no TCP
// options) followed, from the same source to the same address and port and
// within the phase timeout, by a regular SYN. It is the live counterpart of
// assemble's rsyn_to_isyn rule (analysis/assemble/phase.go), with the same
// window: phase two may come from one second before phase one's answer to just
// under the timeout after it, counted in whole seconds.
//
// Memory is fixed: New allocates a set-associative table of 32-byte slots
// (and a small table of sources) within Config.Memory, and nothing grows
// after. When a bucket is full, a new phase one replaces a slot past the
// timeout first, then the oldest entry of the lowest class; the class of an
// entry grows with the number of irregular SYNs its source sent, so that a
// flood of spoofed one-off sources replaces only one-off entries and a
// phase-one scanner's sweep survives it (see Stats for what is counted). A
// Detector is not safe for concurrent use: one goroutine feeds it, off the
// packet path.
package twophase

import (
	"math"
	"net/netip"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Defaults for Config.
const (
	DefaultTimeout = 600 * time.Second
	DefaultMemory  = 32 << 20
)

// Config configures a Detector. Zero values mean the defaults.
type Config struct {
	// Timeout is the phase timeout: the longest delay from phase one to
	// phase two.
	Timeout time.Duration
	// Memory is the budget of the table in bytes (at least MinMemory);
	// Capacity tells how many phase-one SYNs it holds.
	Memory int64
}

// windowPeriod is the span of packet time over which Stats' windows are
// averaged.
const windowPeriod = 10 * time.Second

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

// Stats counts what the Detector did. The tags describe each field for
// spoki's stats line and metrics (package stats).
type Stats struct {
	// Pairs is the number of two-phase pairs found.
	Pairs uint64 `line:"two_phase_pairs" metric:"twophase_pairs_total" help:"Two-phase pairs found."`
	// EvictedOneOff and EvictedRepeat count entries replaced by a newer
	// phase one because their bucket was full, by the class of the entry
	// lost: of a source seen once in its run (one-off) or of a source that
	// sent more irregular SYNs (repeat).
	EvictedOneOff uint64 `line:"two_phase_evicted_oneoff" metric:"twophase_evictions_total{cause=oneoff}" help:"Phase ones lost before their window closed, by cause: oneoff and repeat (replaced for space, by the class of the entry lost), rejected (not kept: the bucket held only entries of sources with more SYNs)."`
	EvictedRepeat uint64 `line:"two_phase_evicted_repeat" metric:"twophase_evictions_total{cause=repeat}"`
	// Rejected counts phase-one SYNs not kept: their bucket held only
	// entries of sources with more SYNs, which a newcomer may not replace.
	Rejected uint64 `line:"two_phase_rejected" metric:"twophase_evictions_total{cause=rejected}"`
	// Replaced counts phase ones superseded by a newer irregular SYN with
	// the same source, address and port (not a loss: the newer answer is
	// the one a second phase follows).
	Replaced uint64 `line:"two_phase_replaced" metric:"twophase_replaced_total" help:"Phase ones superseded by a newer irregular SYN with the same source, address and port."`
	// Expired counts phase-one SYNs dropped after the timeout.
	Expired uint64 `line:"two_phase_expired" metric:"twophase_expired_total" help:"Phase ones dropped after the phase timeout."`
	// Entries is the number of slots in use now, including some past the
	// timeout that Expire has not swept yet; Capacity is the number of
	// slots, Bytes the table's memory.
	Entries  int   `line:"two_phase_entries" metric:"twophase_entries" help:"Phase-one SYNs held in the detector's table."`
	Capacity int   `line:"two_phase_capacity" metric:"twophase_capacity" help:"Slots of the detector's table (--phase-memory / 32 bytes, less the source and prefix tables)."`
	Bytes    int64 `line:"two_phase_table_bytes" metric:"twophase_table_bytes" help:"Memory of the detector's table."`
	// WindowOneOff and WindowRepeat are the effective windows: the mean
	// age (phase one to its eviction) of the entries evicted for space in
	// the last full 10-second period of packet time, for one-off and
	// repeat entries. With no such eviction in that period they are the
	// timeout: nothing was lost before its window closed.
	WindowOneOff time.Duration `line:"two_phase_window_s" metric:"twophase_window_seconds{class=oneoff}" help:"Effective window: mean age at eviction of the entries evicted for space in the last 10 s of packet time, by class (oneoff, repeat); the phase timeout when none was."`
	WindowRepeat time.Duration `line:"two_phase_window_repeat_s" metric:"twophase_window_seconds{class=repeat}"`
}

// Evicted is the number of phase ones lost before their window closed.
func (s Stats) Evicted() uint64 { return s.EvictedOneOff + s.EvictedRepeat + s.Rejected }

// Detector matches regular SYNs to earlier irregular ones.
type Detector struct {
	cfg        Config
	t          table
	timeoutSec int64
	srcTimeout int64
	stats      Stats
	// sweepNext is the next bucket ExpireSome sweeps.
	sweepNext int
	// The current window period and its evictions' ages, by class group.
	periodEnd time.Time
	ageSum    [2]time.Duration
	ageN      [2]uint64
	// touched keeps what table.touch loaded, so that its loads are not
	// optimised away; it means nothing.
	touched uint32
}

// New returns a Detector; it allocates the whole table now.
func New(cfg Config) *Detector {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Memory <= 0 {
		cfg.Memory = DefaultMemory
	}
	t, free := newTable(cfg.Memory)
	d := &Detector{cfg: cfg, t: t, timeoutSec: int64(cfg.Timeout / time.Second)}
	releaseWith(d, free)
	d.srcTimeout = min(max(d.timeoutSec, 1), maxSourceTimeout)
	d.stats.Capacity = len(d.t.buckets) * bucketWays
	d.stats.Bytes = d.t.bytes()
	d.stats.WindowOneOff, d.stats.WindowRepeat = cfg.Timeout, cfg.Timeout
	return d
}

// Capacity returns the number of phase-one SYNs the table holds and its
// memory in bytes.
func Capacity(memory int64) (entries int, bytes int64) {
	nb, ns, np := geometry(memory)
	return int(nb) * bucketWays, nb*bucketWays*EntryBytes + (ns+np)*bucketWays*SourceBytes
}

// Stats returns the counters.
func (d *Detector) Stats() Stats { return d.stats }

// Config returns the configuration in use, defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Observe feeds one packet record; only SYNs matter. It returns the pair
// when p is the regular SYN that completes one. It allocates nothing.
func (d *Detector) Observe(p *records.Packet) (Pair, bool) {
	if !p.IsSYN() {
		return Pair{}, false
	}
	irregular, reasons, ok := usable(p)
	if !ok {
		d.tick(p.Time)
		return Pair{}, false
	}
	s := recOf(p, irregular, reasons)
	return d.observe(&s)
}

// usable reports whether the detector can use the SYN p, and p's
// irregularity: a regular SYN (a phase two to look up), or an answered
// irregular one. Only an answered SYN can be phase one: the scanner came
// back because it got a SYN-ACK (assemble requires the confirmation).
func usable(p *records.Packet) (irregular bool, reasons records.Reasons, ok bool) {
	irregular, reasons = records.Irregular(p)
	return irregular, reasons, !irregular || p.Probed
}

// synRec is what the detector reads of a SYN it keeps or matches: the key and
// what the `two_phase` event needs (the Feed queues it in this form).
type synRec struct {
	t                      time.Time
	src, dst               netip.Addr
	srcPort, dstPort, ipid uint16
	seq, userID            uint32
	ttl                    uint8
	reasons                records.Reasons
	scanner                records.Scanner
	irregular              bool
}

func recOf(p *records.Packet, irregular bool, reasons records.Reasons) synRec {
	return synRec{t: p.Time, src: p.Src, dst: p.Dst, srcPort: p.SrcPort, dstPort: p.DstPort, ipid: p.IPID,
		seq: p.Seq, userID: p.UserID, ttl: p.TTL, reasons: reasons, scanner: records.Fingerprint(p), irregular: irregular}
}

// observe is Observe of a SYN that matters: an answered irregular one
// (kept as phase one) or a regular one (looked up).
func (d *Detector) observe(p *synRec) (Pair, bool) {
	k := d.t.keyOf(p)
	d.touched ^= d.t.touch(&k, p.irregular)
	return d.observeKey(p, &k)
}

// observeKey is observe of a SYN whose key is k (keyOf).
func (d *Detector) observeKey(p *synRec, k *key) (Pair, bool) {
	d.tick(p.t)
	if p.irregular {
		d.add(p, k)
		return Pair{}, false
	}
	stag, flow := k.stag, k.flow
	b := &d.t.buckets[k.b]
	for i := range b {
		e := &b[i]
		if !e.used() || e.src != stag || e.flow != flow {
			continue
		}
		if e.expiredAt(p.t.Unix(), d.timeoutSec) {
			*e = entry{}
			d.stats.Entries--
			d.stats.Expired++
			return Pair{}, false
		}
		if !within(time.Unix(0, e.nanos), p.t, d.cfg.Timeout) {
			return Pair{}, false
		}
		one := e.phase()
		*e = entry{}
		d.stats.Entries--
		d.stats.Pairs++
		two := Phase{
			Time: p.t, SrcPort: p.srcPort, Seq: p.seq, TTL: p.ttl, IPID: p.ipid,
			Reasons: p.reasons, Scanner: p.scanner, UserID: p.userID,
		}
		return Pair{Src: p.src, Dst: p.dst, DstPort: p.dstPort, One: one, Two: two}, true
	}
	return Pair{}, false
}

// within is assemble's window on whole seconds: t ∈ [t1−1 s, t1+timeout).
func within(t1, t time.Time, timeout time.Duration) bool {
	a, b := t1.Unix(), t.Unix()
	if a <= b {
		return b-a < int64(timeout/time.Second)
	}
	return a-b <= 1
}

// add keeps an answered irregular SYN as phase one.
func (d *Detector) add(p *synRec, k *key) {
	stag, flow := k.stag, k.flow
	nowSec := p.t.Unix()
	ne := entry{
		src: stag, flow: flow, nanos: p.t.UnixNano(), seq: p.seq, userID: p.userID,
		srcPort: p.srcPort, ipid: p.ipid, ttl: p.ttl, meta: packMeta(p.reasons, p.scanner),
		class: d.t.sourceClass(stag, nowSec, d.srcTimeout),
	}
	if d.t.prefixOver(k.ptag, nowSec, d.srcTimeout) {
		// The source's prefix sent more than a scanner's share: its
		// entries are one-offs, whatever its address's count.
		ne.class = 1
	}
	b := &d.t.buckets[k.b]
	exp := expiryAt(nowSec, d.timeoutSec)
	free, victim := -1, -1
	// The victim is the entry of the lowest class, the oldest of those, the
	// first of those: vc and vn are its class and time, and the choice is
	// made without a branch on them (random in a flood).
	vc, vn := 1<<8, int64(math.MaxInt64)
	for i := range b {
		e := &b[i]
		if !e.used() {
			if free < 0 {
				free = i
			}
			continue
		}
		if e.src == stag && e.flow == flow {
			// A newer irregular SYN replaces the older one: its answer
			// is the one the scanner's second phase follows.
			ne.class = max(ne.class, e.class)
			*e = ne
			d.stats.Replaced++
			return
		}
		if exp.of(e) {
			*e = entry{}
			d.stats.Entries--
			d.stats.Expired++
			if free < 0 {
				free = i
			}
			continue
		}
		c := int(e.class)
		m := -(bit(c < vc) | bit(c == vc)&bit(e.nanos < vn)) // all ones if e goes first
		victim ^= (victim ^ i) & m
		vc ^= (vc ^ c) & m
		vn ^= (vn ^ e.nanos) & int64(m)
	}
	if free >= 0 {
		b[free] = ne
		d.stats.Entries++
		return
	}
	v := &b[victim]
	if v.class > ne.class {
		d.stats.Rejected++
		return
	}
	g := 0
	if v.class > 1 {
		g = 1
		d.stats.EvictedRepeat++
	} else {
		d.stats.EvictedOneOff++
	}
	d.ageSum[g] += time.Duration(ne.nanos - v.nanos)
	d.ageN[g]++
	*v = ne
}

// bit is 1 for true, 0 for false.
func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tick closes the window period that now is past.
func (d *Detector) tick(now time.Time) {
	if now.Before(d.periodEnd) {
		return
	}
	if !d.periodEnd.IsZero() {
		w := [2]*time.Duration{&d.stats.WindowOneOff, &d.stats.WindowRepeat}
		for g := range w {
			*w[g] = d.cfg.Timeout
			if d.ageN[g] > 0 {
				*w[g] = d.ageSum[g] / time.Duration(d.ageN[g])
			}
		}
	}
	d.ageSum, d.ageN = [2]time.Duration{}, [2]uint64{}
	d.periodEnd = now.Add(windowPeriod)
}

// Expire drops every phase one whose window has closed by now (the latest
// packet time seen), so that Entries counts the live ones. It scans the
// whole table: call it every few seconds, not per SYN.
func (d *Detector) Expire(now time.Time) {
	d.sweepNext = 0
	for !d.ExpireSome(now, len(d.t.buckets)) {
	}
}

// ExpireSome is Expire in steps: it sweeps the next n buckets (of 8
// entries, 256 bytes) and reports whether that ended a pass over the whole table, so
// that a caller can serve its queue between steps instead of pausing for
// a large table's full scan.
func (d *Detector) ExpireSome(now time.Time, n int) (passDone bool) {
	d.tick(now)
	exp := expiryAt(now.Unix(), d.timeoutSec)
	end := min(d.sweepNext+max(n, 1), len(d.t.buckets))
	for bi := d.sweepNext; bi < end; bi++ {
		b := &d.t.buckets[bi]
		for i := range b {
			if e := &b[i]; e.used() && exp.of(e) {
				*e = entry{}
				d.stats.Entries--
				d.stats.Expired++
			}
		}
	}
	if end == len(d.t.buckets) {
		d.sweepNext = 0
		return true
	}
	d.sweepNext = end
	return false
}
