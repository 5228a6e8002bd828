package report

import (
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// distinct counts distinct keys (addresses, networks) in bounded memory:
// exactly up to limit keys (exactLimit if 0), then by HyperLogLog
// (Flajolet et al. 2007) with 2^hllBits one-byte registers (4 KiB,
// standard error about 1.6%). Estimated reports whether the count is an
// estimate.
type distinct struct {
	limit int
	exact []uint64 // sorted: 8 bytes a key, no map overhead
	regs  []uint8
}

const (
	// exactLimit is the exact part of the whole run's counters.
	exactLimit = 1024
	// hourExactLimit is the exact part of each hour's counters, smaller
	// because there are up to Config.MaxHours of them.
	hourExactLimit = 256
	hllBits        = 12
)

func (d *distinct) add(h uint64) {
	if d.regs != nil {
		d.addHLL(h)
		return
	}
	i, found := slices.BinarySearch(d.exact, h)
	if found {
		return
	}
	limit := d.limit
	if limit == 0 {
		limit = exactLimit
	}
	if len(d.exact) < limit {
		d.exact = slices.Insert(d.exact, i, h)
		return
	}
	d.regs = make([]uint8, 1<<hllBits)
	for _, k := range d.exact {
		d.addHLL(k)
	}
	d.addHLL(h)
	d.exact = nil
}

func (d *distinct) addHLL(h uint64) {
	idx := h >> (64 - hllBits)
	rank := uint8(bits.LeadingZeros64(h<<hllBits|1<<(hllBits-1)) + 1)
	if rank > d.regs[idx] {
		d.regs[idx] = rank
	}
}

// Estimated reports whether count is a HyperLogLog estimate.
func (d *distinct) Estimated() bool { return d.regs != nil }

// count returns the number of distinct keys (exact or estimated).
func (d *distinct) count() int {
	if d.regs == nil {
		return len(d.exact)
	}
	m := float64(len(d.regs))
	sum, zeros := 0.0, 0
	for _, r := range d.regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if est <= 2.5*m && zeros > 0 {
		est = m * math.Log(m/float64(zeros)) // linear counting
	}
	return int(math.Round(est))
}

// hashAddr hashes an address (splitmix64 over its 16 bytes): fixed, so
// that a report is the same every time it is built.
func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	var h uint64
	for i := 0; i < 16; i += 8 {
		v := uint64(b[i])<<56 | uint64(b[i+1])<<48 | uint64(b[i+2])<<40 | uint64(b[i+3])<<32 |
			uint64(b[i+4])<<24 | uint64(b[i+5])<<16 | uint64(b[i+6])<<8 | uint64(b[i+7])
		h = mix64(h ^ v)
	}
	return h
}

func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// network returns a's /24 (IPv4) or /48 (IPv6): the unit of the "/24s"
// columns.
func network(a netip.Addr) netip.Addr {
	bitsLen := 24
	if a.Is6() {
		bitsLen = 48
	}
	p, _ := a.Prefix(bitsLen)
	return p.Addr()
}
