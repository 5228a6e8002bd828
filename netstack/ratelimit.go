package netstack

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"
)

// The SYN-ACK limiter keeps the telescope from being a reflector: a flood of
// SYNs spoofed from a victim's address would otherwise make spoki send the
// victim one SYN-ACK per SYN. Each source gets a token bucket per class of
// SYN (regular and irregular, records.Irregular), so that a scanner whose
// irregular phase one is capped still has its phase-two (regular) SYNs
// answered.
//
// The buckets live in one fixed, preallocated table of int64s indexed by a
// keyed hash of the source: IPv4 sources by their /32, IPv6 sources by
// their /64 (one host can use every address of its /64, and a reply to any
// of them reaches the same network). The table holds no pointers and the
// packet path neither allocates nor locks: each bucket is one atomic word
// updated by compare-and-swap, so the TUN readers (one per TUN queue)
// contend only when they hit the same bucket at the same time.
//
// Sources whose hashes collide share a bucket. That only makes the limit
// stricter for them, never looser: a flood cannot buy any source more
// replies than its own bucket allows. With the default 65,536 entries, a
// flood from random sources must exceed the bucket rate times the table
// size (tens of millions of SYNs per second) before it steals a meaningful
// share of an unrelated source's budget. The hash key is random per process,
// so which sources collide cannot be predicted from outside.

// SYNACKLimit is one class's token bucket: Burst SYN-ACKs at once, refilled
// at Rate per second. Rate 0 disables the limit for the class.
type SYNACKLimit struct {
	Rate, Burst int
}

// SYNACKLimits configures the per-source SYN-ACK limiter.
type SYNACKLimits struct {
	// Regular limits answers to regular SYNs (what real TCP stacks send:
	// options, ordinary TTL and IP ID), Irregular to irregular ones.
	Regular, Irregular SYNACKLimit
	// TableEntries is the number of sources tracked, rounded down to a
	// power of two; each entry costs SYNLimitEntryBytes. 0 means
	// DefaultSYNTableEntries.
	TableEntries int
}

// Defaults of the SYN-ACK limiter. A normal scanner never reaches them: a
// sweep of a /24 on eight ports from one source (2,048 SYNs) fits the
// bursts whatever its rate, and a source that keeps sending gets 500
// irregular and 1,000 regular answers per second. A reflection flood spoofed
// from one victim is capped at the same figures: at most 4,096 + 500/s
// SYN-ACKs for irregular SYNs plus 4,096 + 1,000/s for regular ones, about
// 66 KB/s of 44-byte IPv4 SYN-ACKs (IPv6: per /64, 64-byte SYN-ACKs).
const (
	DefaultSYNRegularRate    = 1000
	DefaultSYNRegularBurst   = 4096
	DefaultSYNIrregularRate  = 500
	DefaultSYNIrregularBurst = 4096
	DefaultSYNTableEntries   = 1 << 16
	// MaxSYNTableEntries bounds the table (256 MiB).
	MaxSYNTableEntries = 1 << 24
	// SYNLimitEntryBytes is the memory of one table entry: one int64
	// bucket per class.
	SYNLimitEntryBytes = 16
)

// DefaultSYNACKLimits returns the defaults above.
func DefaultSYNACKLimits() SYNACKLimits {
	return SYNACKLimits{
		Regular:      SYNACKLimit{Rate: DefaultSYNRegularRate, Burst: DefaultSYNRegularBurst},
		Irregular:    SYNACKLimit{Rate: DefaultSYNIrregularRate, Burst: DefaultSYNIrregularBurst},
		TableEntries: DefaultSYNTableEntries,
	}
}

// Validate checks the limits: a class that is on needs a burst of at least
// one, and the table size must be in range.
func (l SYNACKLimits) Validate() error { return l.validate(synNames) }

// String describes the limits as the start-up line prints them.
func (l SYNACKLimits) String() string {
	if l.Regular.Rate <= 0 && l.Irregular.Rate <= 0 {
		return "off"
	}
	return l.describe(synNames)
}

// limitNames are what the messages of one use of the limiter's table call
// the limit, the table and the two classes: the SYN-ACK limiter's and the
// reply limiter's (ReplyLimits) differ only in them.
type limitNames struct {
	limit, table string
	class        [2]string
}

var synNames = limitNames{limit: "SYN-ACK", table: "SYN", class: [2]string{"regular", "irregular"}}

// validate is Validate with the messages in n's words.
func (l SYNACKLimits) validate(n limitNames) error {
	for i, lim := range [2]SYNACKLimit{l.Regular, l.Irregular} {
		name := n.class[i]
		if lim.Rate < 0 || lim.Burst < 0 {
			return fmt.Errorf("%w: %s %s limit %d/s burst %d: negative", ErrConfig, name, n.limit, lim.Rate, lim.Burst)
		}
		if lim.Rate > int(time.Second) {
			return fmt.Errorf("%w: %s %s rate %d/s above 1e9", ErrConfig, name, n.limit, lim.Rate)
		}
		if lim.Rate > 0 && (lim.Burst < 1 || lim.Burst > 1<<30) {
			return fmt.Errorf("%w: %s %s burst %d out of range 1-%d", ErrConfig, name, n.limit, lim.Burst, 1<<30)
		}
	}
	if l.TableEntries < 0 || l.TableEntries > MaxSYNTableEntries {
		return fmt.Errorf("%w: %s limit table of %d entries out of range 0-%d", ErrConfig, n.table, l.TableEntries, MaxSYNTableEntries)
	}
	return nil
}

// describe is the start-up line's description of both classes and the
// table, with the classes in n's words (lower case).
func (l SYNACKLimits) describe(n limitNames) string {
	class := func(c SYNACKLimit) string {
		if c.Rate <= 0 {
			return "off"
		}
		return fmt.Sprintf("%d/s burst %d", c.Rate, c.Burst)
	}
	e := l.entries()
	return fmt.Sprintf("%s %s, %s %s, %d sources (%d KiB)",
		strings.ToLower(n.class[0]), class(l.Regular), strings.ToLower(n.class[1]), class(l.Irregular), e, e*SYNLimitEntryBytes>>10)
}

// entries is the table's real size: TableEntries (or the default) rounded
// down to a power of two, so that the index is a mask.
func (l SYNACKLimits) entries() int {
	n := l.TableEntries
	if n <= 0 {
		n = DefaultSYNTableEntries
	}
	return 1 << (bits.Len(uint(n)) - 1)
}

// gcra is one class's bucket as the generic cell rate algorithm keeps it:
// a single "theoretical arrival time" per source. A SYN at time t is
// answered when tat-t is at most tolerance, and then tat becomes
// max(tat, t)+interval. That is a token bucket of Burst tokens refilled
// every interval, in one word.
type gcra struct {
	interval  int64 // ns per token; 0 = the class is not limited
	tolerance int64 // (burst-1) * interval
}

func newGCRA(l SYNACKLimit) gcra {
	if l.Rate <= 0 {
		return gcra{}
	}
	iv := int64(time.Second) / int64(l.Rate)
	return gcra{interval: iv, tolerance: int64(l.Burst-1) * iv}
}

// synLimiter is the table of buckets.
type synLimiter struct {
	key   [2]uint64 // the source hash's random key (sourceHash)
	mask  uint64
	cls   [2]gcra // regular, irregular
	epoch time.Time
	// tat holds two buckets per entry, [regular, irregular], each the
	// theoretical arrival time in ns since epoch. Zero is a full bucket.
	tat []int64
}

// newSYNLimiter builds the table; nil when both classes are off.
func newSYNLimiter(l SYNACKLimits) *synLimiter {
	cls := [2]gcra{newGCRA(l.Regular), newGCRA(l.Irregular)}
	if cls[0].interval == 0 && cls[1].interval == 0 {
		return nil
	}
	n := l.entries()
	var k [16]byte
	rand.Read(k[:])
	return &synLimiter{
		key:   [2]uint64{binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])},
		mask:  uint64(n - 1),
		cls:   cls,
		epoch: time.Now(),
		tat:   make([]int64, 2*n),
	}
}

// allow takes one token from src's bucket of the class and reports whether
// there was one. src is the 4- or 16-byte source address as on the wire.
// A nil limiter allows everything.
func (l *synLimiter) allow(src []byte, irregular bool, now time.Time) bool {
	if l == nil {
		return true
	}
	c := 0
	if irregular {
		c = 1
	}
	g := l.cls[c]
	if g.interval == 0 {
		return true
	}
	p := &l.tat[l.entry(src)+c]
	t := int64(now.Sub(l.epoch))
	for {
		old := atomic.LoadInt64(p)
		tat := max(old, t)
		if tat-t > g.tolerance {
			return false
		}
		if atomic.CompareAndSwapInt64(p, old, tat+g.interval) {
			return true
		}
	}
}

// touch loads src's entry and returns it, for the caller to keep (so that
// the load stays): see frontEnd.touch. One load brings both classes'
// buckets: an entry is 16 bytes at a multiple of 16 in an allocation Go
// aligns to at least 16, so it never spans two cache lines.
func (l *synLimiter) touch(src []byte) int64 {
	return atomic.LoadInt64(&l.tat[l.entry(src)])
}

// entry is the index in tat of src's entry (its regular bucket; the
// irregular one follows it). src is the 4- or 16-byte source address; an
// IPv6 source counts by its /64.
func (l *synLimiter) entry(src []byte) int {
	return int(2 * (l.sourceHash(src) & l.mask))
}

// sourceHash is the keyed hash of a source: the Go runtime's fallback map
// hash of a 4- or 8-byte word (memhash32Fallback, memhash64Fallback in
// runtime/hash64.go), two multiply-folds, keyed with the limiter's random
// words where the runtime uses its constants and the process's seed. It
// costs about 2 ns where maphash.Bytes of the same bytes costs 10
// (BenchmarkSourceHash); the random key per table keeps which sources
// share a bucket unpredictable from outside. IPv4 and IPv6 sources hash with different
// lengths folded in, so that a /64 and an IPv4 address of the same word
// land apart.
func (l *synLimiter) sourceHash(src []byte) uint64 {
	var a, n uint64
	if len(src) >= 8 {
		a, n = binary.BigEndian.Uint64(src), 8
	} else {
		a, n = uint64(binary.BigEndian.Uint32(src)), 4
	}
	return hashMix(hashFinal^n, hashMix(a^l.key[0], a^l.key[1]))
}

// hashMix is wyhash's multiply-fold, which the Go runtime's map hash uses on
// CPUs without AES: the halves of the 128-bit product of a and b, xored.
func hashMix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hashFinal is the runtime's constant for a hash's last step (m5), with
// the length of the input xored in.
const hashFinal = 0x1d8e4e27c47d124f
