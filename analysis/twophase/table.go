package twophase

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"time"
	"unsafe"

	"github.com/spoki-telescope/spoki/records"
)

// The table is set-associative: a key hashes to one bucket of bucketWays
// slots and may live in any of them. A bucket of 32-byte slots is four
// cache lines; a lookup reads one bucket, and a full bucket picks its own
// victim, so that the replacement policy (below) sees a small, local
// choice instead of a global queue an attacker can push through. A phase
// one also reads a line of the source table and one of the prefix table:
// six lines, each a cache miss for a random spoofed source, which are
// loaded together (touch) rather than one after the other.
const (
	bucketWays = 8
	// EntryBytes is the size of one phase-one slot.
	EntryBytes = 32
	// SourceBytes is the size of one slot of the source table.
	SourceBytes = 8
	// entriesPerSource is the ratio of phase-one slots to source slots.
	entriesPerSource = 4
	// entriesPerPrefix is the ratio of phase-one slots to prefix slots
	// (the prefix table's slots are source slots, of SourceBytes). A
	// prefix keeps its slot by its count, so the table need only hold the
	// prefixes that send many SYNs, which are few; one-off prefixes churn
	// the rest.
	entriesPerPrefix = 16
	// bytesPerBucket is what one bucket of entries costs with its share of
	// the source and prefix tables.
	bytesPerBucket = bucketWays*EntryBytes + bucketWays/entriesPerSource*SourceBytes + bucketWays*SourceBytes/entriesPerPrefix
	// MinMemory is the smallest budget New accepts (smaller ones are
	// raised to it): a few buckets, so the policy still has choices.
	MinMemory = 64 << 10
)

// entry is one phase-one SYN: exactly what the `two_phase` event needs of
// it, and a key. There is no pointer in it, so the garbage collector never
// scans the table, and nothing in it is allocated per SYN. The addresses
// and port are not kept: phase two supplies them, and the raw log (joined
// by userid) holds the rest of phase one.
type entry struct {
	src     uint32 // keyed hash of the source address; also its source-table tag
	flow    uint32 // keyed hash of (src, dst, dport), other bits than the bucket's
	nanos   int64  // phase one's time, Unix nanoseconds
	seq     uint32
	userID  uint32
	srcPort uint16
	ipid    uint16
	ttl     uint8
	meta    uint8 // metaUsed | reasons (3 bits) | scanner << 3 (3 bits)
	class   uint8 // the source's weight when the entry was made (see class)
	_       uint8
}

const metaUsed = 0x80

type bucket [bucketWays]entry

// source counts the irregular SYNs one source sent in its current run (a
// run ends when the source is silent for the timeout).
type source struct {
	tag   uint32 // the entry's src hash; 0 marks a free slot
	count uint16 // saturating at maxSourceCount
	last  uint16 // Unix seconds mod 2^16 of its latest SYN
}

type sourceBucket [bucketWays]source

// maxSourceCount is where a source's count saturates.
const maxSourceCount = 1<<16 - 1

// table is the fixed-size state of a Detector.
type table struct {
	buckets []bucket
	sources []sourceBucket
	// prefixes counts irregular SYNs per source prefix (/24 of IPv4, /48
	// of IPv6) as sources does per address, with the same slots and
	// replacement rule: one slot per entriesPerPrefix entries.
	prefixes []sourceBucket
	key      hashKey
	// quota is the count above which a source's new entries lose their
	// protection (they are made as one-offs): one source may not hold more
	// than its share of the protected entries. It stays below the count's
	// saturation (maxSourceCount), which it could not pass otherwise.
	quota uint32
	// prefixQuota is the same for a source prefix: over it, the prefix's
	// new entries are one-offs whatever their address's count, so that a
	// spoofer who confines random sources to one /24 (each address under
	// its quota) does not get a scanner's protection for all of them. It
	// is 4 quotas (1/16 of the table): a few addresses of one /24 may
	// each use their share, and one address sweeping a /16 is over its
	// own quota before its /24 is over this one.
	prefixQuota uint32
}

// geometry returns the number of entry and source buckets that fit memory.
func geometry(memory int64) (nb, ns, np int64) {
	memory = max(memory, MinMemory)
	nb = memory / bytesPerBucket
	ns = max(1, nb/entriesPerSource)
	np = max(1, nb/entriesPerPrefix)
	return nb, ns, np
}

// newTable allocates the table outside the Go heap, in one mapping
// (offHeapHuge): the source and prefix tables first, then the entries (at
// a multiple of 64 bytes, so a bucket is four whole cache lines); free
// unmaps it.
func newTable(memory int64) (t table, free func()) {
	nb, ns, np := geometry(memory)
	const sbSize, bSize = int(unsafe.Sizeof(sourceBucket{})), int(unsafe.Sizeof(bucket{}))
	mem, free := offHeapHuge(int(ns+np)*sbSize + int(nb)*bSize)
	at := unsafe.Pointer(unsafe.SliceData(mem))
	sources := unsafe.Slice((*sourceBucket)(at), ns)
	prefixes := unsafe.Slice((*sourceBucket)(unsafe.Add(at, int(ns)*sbSize)), np)
	buckets := unsafe.Slice((*bucket)(unsafe.Add(at, int(ns+np)*sbSize)), nb)
	quota := min(max(64, nb*bucketWays/64), maxSourceCount-1)
	return table{
		buckets:     buckets,
		sources:     sources,
		prefixes:    prefixes,
		key:         newHashKey(),
		quota:       uint32(quota),
		prefixQuota: uint32(min(4*quota, maxSourceCount-1)),
	}, free
}

// bytes is the table's memory.
func (t *table) bytes() int64 {
	return int64(len(t.buckets))*bucketWays*EntryBytes + int64(len(t.sources)+len(t.prefixes))*bucketWays*SourceBytes
}

// prefixTag is the keyed hash of a source's prefix: its /24 (IPv4, also
// when mapped into IPv6) or /48 (IPv6), the family apart.
func (t *table) prefixTag(src netip.Addr) uint32 {
	var p uint64
	if src = src.Unmap(); src.Is4() {
		a := src.As4()
		p = uint64(a[0])<<56 | uint64(a[1])<<48 | uint64(a[2])<<40 | 4
	} else {
		a := src.As16()
		p = binary.BigEndian.Uint64(a[:8])&^(1<<16-1) | 6
	}
	k := &t.key
	tag := uint32(mix(hashFinal^8, mix(p>>32^k[5], uint64(uint32(p))^k[6])))
	if tag == 0 {
		tag = 1
	}
	return tag
}

// hashes returns the source tag, the flow hash and the bucket of a key.
// Both hashes are keyed with the table's random key, so that an attacker
// cannot aim SYNs at one bucket. The bucket comes from bits the stored
// flow hash does not hold: two keys of one source that share a bucket still
// differ in 32 bits of flow hash (and 32 of source) before they collide.
// The flow hash goes on from the source's: the source's 16 bytes are
// hashed once.
func (t *table) hashes(src, dst netip.Addr, dport uint16) (stag, flow uint32, b int) {
	s16, d16 := src.As16(), dst.As16()
	k := &t.key
	hs := mix(hashFinal^16, mix(binary.BigEndian.Uint64(s16[:8])^k[0], binary.BigEndian.Uint64(s16[8:])^k[1]))
	stag = uint32(hs)
	if stag == 0 {
		stag = 1
	}
	h := mix(binary.BigEndian.Uint64(d16[:8])^k[2], binary.BigEndian.Uint64(d16[8:])^hs)
	h = mix(hashFinal^34, mix(uint64(dport)^k[3], h^k[4]))
	flow = uint32(h)
	b = int((h >> 32) * uint64(len(t.buckets)) >> 32)
	return stag, flow, b
}

// hashKey is a table's random key: the words its hashes are keyed with.
type hashKey [7]uint64

func newHashKey() hashKey {
	var b [len(hashKey{}) * 8]byte
	rand.Read(b[:])
	var k hashKey
	for i := range k {
		k[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return k
}

// mix is wyhash's multiply-fold, which the Go runtime's own map hash uses
// on CPUs without AES (runtime/hash64.go): the halves of the 128-bit
// product of a and b, xored. The table's hashes are that hash's steps on
// the key's 64-bit words, keyed with random words instead of the process's
// seed: three of them cost a few multiplications, where maphash.Bytes of
// the same bytes cost three calls of tens of ns.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hashFinal is the runtime's constant for a hash's last step (m5), with
// the length of the input xored in.
const hashFinal = 0x1d8e4e27c47d124f

// key is where a SYN goes in the table, hashed once: the source tag and
// flow hash an entry keeps, the entry bucket, and for a phase one the
// prefix tag it counts under (its source and prefix buckets are slotOf
// the tags).
type key struct {
	stag, flow, ptag uint32
	b                int
}

// keyOf returns the key of p; the prefix tag only for an irregular SYN (a
// regular one only looks up its entry).
func (t *table) keyOf(p *synRec) key {
	var k key
	k.stag, k.flow, k.b = t.hashes(p.src, p.dst, p.dstPort)
	if p.irregular {
		k.ptag = t.prefixTag(p.src)
	}
	return k
}

// slotOf is the bucket of tag in a source-like table of n buckets.
func slotOf(tag uint32, n int) int { return int(uint64(tag) * uint64(n) >> 32) }

// touch loads a word of each cache line the SYN of k will read (its entry
// bucket's four, and for a phase one its source and prefix buckets'), one
// load independent of the others, so that their cache misses overlap:
// reading them in the order the SYN is handled waits for each miss in
// turn, where a random SYN in a table of tens of MiB misses on every one.
// It returns the words, for the caller to keep (so the loads stay).
func (t *table) touch(k *key, irregular bool) uint32 {
	b := &t.buckets[k.b]
	x := b[0].src ^ b[2].src ^ b[4].src ^ b[6].src
	if irregular {
		x ^= t.sources[slotOf(k.stag, len(t.sources))][0].tag ^ t.prefixes[slotOf(k.ptag, len(t.prefixes))][0].tag
	}
	return x
}

// sourceClass counts one more irregular SYN of the source and returns the
// class of the entry it makes: 1 for the first SYN of a run, growing with
// the logarithm of the count (2-3 SYNs: 2, 4-7: 3, ...), and 1 again once
// the source is over its quota. A phase-one scanner sweeps many addresses
// from one source, so its entries get high classes; a spoofed flood from
// random sources gets class 1 throughout.
//
// The source table is replaced by the same rule as the entries: a slot
// whose run ended goes first, then the slot with the smallest count, the
// least recently seen of those. A
// flood of one-off sources so churns only the count-1 slots, and a source
// with a run survives it.
func (t *table) sourceClass(stag uint32, now int64, timeout int64) uint8 {
	return classOf(bump(&t.sources[slotOf(stag, len(t.sources))], stag, now, timeout), t.quota)
}

// prefixOver counts one more irregular SYN of the source's prefix and
// reports whether the prefix is over its quota.
func (t *table) prefixOver(ptag uint32, now int64, timeout int64) bool {
	return bump(&t.prefixes[slotOf(ptag, len(t.prefixes))], ptag, now, timeout) > t.prefixQuota
}

// bump counts one more SYN of tag in its bucket sb of a source-like table
// (sources or prefixes) and returns its count in the current run; see
// sourceClass for the replacement rule.
func bump(sb *sourceBucket, tag uint32, now int64, timeout int64) uint32 {
	now16 := uint16(now)
	// The victim is the slot of the least rank: the first free one, else
	// the last whose run ended, else the one of the smallest count, the
	// oldest of those, the first of those. A rank is a number, so that the
	// choice is a min (no branch to mispredict on random counts and ages);
	// its low 4 bits are the slot's index.
	rank := ^uint64(0)
	for i := range sb {
		s := &sb[i]
		age := age16(now16, s.last)
		var r uint64
		switch {
		case s.tag == 0:
			r = uint64(i)<<4 | uint64(i)
		case age >= timeout:
			r = 1<<40 | uint64(bucketWays-1-i)<<4 | uint64(i)
		case s.tag == tag:
			if s.count < maxSourceCount {
				s.count++
			}
			s.last = now16
			return uint32(s.count)
		default:
			r = 2<<40 | uint64(s.count)<<24 | uint64(maxSourceTimeout-age)<<8 | uint64(i)
		}
		rank = min(rank, r)
	}
	sb[rank&0xf] = source{tag: tag, count: 1, last: now16}
	return 1
}

// age16 is the age in seconds of a time stored mod 2^16; a time slightly
// in the future (SYNs of several TUN queues interleave) is age 0. Runs are
// so limited to 2^15 s (about 9 h) of silence, see maxSourceTimeout.
func age16(now, then uint16) int64 {
	d := now - then
	if d >= 1<<15 {
		return 0
	}
	return int64(d)
}

// maxSourceTimeout caps the silence that ends a source's run, so that
// age16 can tell it.
const maxSourceTimeout = 1<<15 - 1

// classOf maps a source's SYN count to the class of its entries.
func classOf(count, quota uint32) uint8 {
	if count > quota {
		return 1
	}
	return uint8(bits.Len32(count))
}

func packMeta(r records.Reasons, s records.Scanner) uint8 {
	return metaUsed | uint8(r)&7 | (uint8(s)&7)<<3
}

func (e *entry) phase() Phase {
	return Phase{
		Time: time.Unix(0, e.nanos).UTC(), SrcPort: e.srcPort, Seq: e.seq, TTL: e.ttl, IPID: e.ipid,
		Reasons: records.Reasons(e.meta & 7), Scanner: records.Scanner(e.meta >> 3 & 7),
		UserID: e.userID, Irregular: true,
	}
}

func (e *entry) used() bool { return e.meta&metaUsed != 0 }

// expiredAt is the old detector's expiry on whole seconds: the window of
// `within` has closed for every phase two at or after now.
func (e *entry) expiredAt(nowSec, timeoutSec int64) bool {
	return nowSec-floorDiv(e.nanos, int64(time.Second)) >= timeoutSec
}

// expiry is expiredAt with the division done once for a whole bucket (or
// table): an entry is expired at nowSec iff its nanos < cut, or always
// when all (a now so late that the cut does not fit in Unix nanoseconds).
type expiry struct {
	cut int64
	all bool
}

// expiryAt returns the expiry of every entry at nowSec: floor(n/1e9) <=
// nowSec-timeoutSec, which is n < (nowSec-timeoutSec+1)*1e9.
func expiryAt(nowSec, timeoutSec int64) expiry {
	const sec = int64(time.Second)
	x := nowSec - timeoutSec
	if nowSec < 0 && x > nowSec {
		// Wrapped below math.MinInt64: nothing is that old.
		return expiry{cut: math.MinInt64}
	}
	switch {
	case x >= math.MaxInt64/sec:
		return expiry{all: true}
	case x+1 < math.MinInt64/sec:
		return expiry{cut: math.MinInt64}
	}
	return expiry{cut: (x + 1) * sec}
}

// of reports whether e is expired.
func (x expiry) of(e *entry) bool { return e.nanos < x.cut || x.all }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}
