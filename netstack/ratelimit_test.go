package netstack

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/spoki-telescope/spoki/records"
)

// irregularSYN is what ZMap sends: no options, TTL 255, IP ID 54321.
func irregularSYN(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	return seg{src: src, dst: dst, sport: sport, dport: dport, seq: seq, ttl: 255, ipid: 54321,
		flags: header.TCPFlagSyn}.build()
}

// regularSYN is what a kernel's connect sends.
func regularSYN(src, dst netip.Addr, sport, dport uint16, seq uint32) []byte {
	return seg{src: src, dst: dst, sport: sport, dport: dport, seq: seq, ttl: 64, ipid: 4242,
		flags: header.TCPFlagSyn, opts: []byte{2, 4, 5, 0xb4, 1, 3, 3, 7}}.build()
}

// drainSYNACKs counts the SYN-ACKs the stack wrote to dst. The front end
// writes them inline, so they are all queued when inject returns.
func (h *harness) drainSYNACKs(dst netip.Addr) (n int) {
	h.t.Helper()
	for {
		pkt := h.ch.Read()
		if pkt == nil {
			return n
		}
		v := pkt.ToView()
		b := v.AsSlice()
		to := netip.AddrFrom4([4]byte(b[16:20]))
		if b[0]>>4 == 6 {
			to = netip.AddrFrom16([16]byte(b[24:40]))
		}
		if tcpOf(b).Flags() == header.TCPFlagSyn|header.TCPFlagAck && to == dst {
			n++
		}
		v.Release()
		pkt.DecRef()
	}
}

// slack is how many tokens a bucket of rate per second can have refilled
// since start: the tests assert upper bounds, never timings.
func slack(start time.Time, rate int) int {
	return int(time.Since(start).Seconds()*float64(rate)) + 1
}

// TestSYNACKLimit checks the per-source budgets: a burst from one source is
// capped at its budget and the rest is recorded unanswered and counted;
// another source is unaffected; a regular SYN from the capped source is
// still answered (phase two of a two-phase scan); IPv6 sources share a
// budget per /64.
func TestSYNACKLimit(t *testing.T) {
	const burst, regBurst, n = 5, 3, 40
	h := newHarness(t, func(c *Config) {
		c.SYNACKLimits = &SYNACKLimits{
			Regular:   SYNACKLimit{Rate: 1, Burst: regBurst},
			Irregular: SYNACKLimit{Rate: 1, Burst: burst},
		}
	})
	a, b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	dst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }

	start := time.Now()
	for i := range n {
		h.inject(irregularSYN(a, dst(i), 40000, 23, uint32(i)))
	}
	got := h.drainSYNACKs(a)
	if got < burst || got > burst+slack(start, 1) {
		t.Errorf("irregular flood of %d from one source: %d SYN-ACKs, want the burst %d (+ refill)", n, got, burst)
	}
	st := h.st.Stats()
	if d := st.DropSYNRateIrregular.Load(); d != uint64(n-got) {
		t.Errorf("DropSYNRateIrregular = %d, want %d", d, n-got)
	}
	if d := st.DropSYNRateRegular.Load(); d != 0 {
		t.Errorf("DropSYNRateRegular = %d, want 0", d)
	}

	t.Run("other source unaffected", func(t *testing.T) {
		for i := range burst {
			h.inject(irregularSYN(b, dst(i), 40001, 23, uint32(i)))
		}
		if got := h.drainSYNACKs(b); got != burst {
			t.Errorf("second source: %d SYN-ACKs, want %d", got, burst)
		}
	})
	t.Run("regular SYN of the capped source answered", func(t *testing.T) {
		for i := range regBurst {
			h.inject(regularSYN(a, dst(200+i), 50000, 80, uint32(i)))
		}
		if got := h.drainSYNACKs(a); got < regBurst {
			t.Errorf("regular SYNs from a source whose irregular budget is spent: %d SYN-ACKs, want %d", got, regBurst)
		}
	})
	t.Run("unanswered SYNs recorded", func(t *testing.T) {
		h.sink.mu.Lock()
		defer h.sink.mu.Unlock()
		var probed, unprobed int
		for _, p := range h.sink.packets {
			if p.Src != a || !p.IsSYN() {
				continue
			}
			if p.Probed {
				probed++
				continue
			}
			unprobed++
			if p.Method != records.MethodNone || p.UserID != 0 || p.NumProbes != 0 {
				t.Errorf("unanswered SYN recorded with method=%v userid=%d probes=%d", p.Method, p.UserID, p.NumProbes)
			}
		}
		if probed+unprobed != n+regBurst || unprobed != n-got {
			t.Errorf("raw rows of the source: %d probed, %d not, want %d rows of which %d not probed",
				probed, unprobed, n+regBurst, n-got)
		}
	})
	t.Run("ipv6 per /64", func(t *testing.T) {
		h6 := newHarness(t, func(c *Config) {
			c.SYNACKLimits = &SYNACKLimits{Irregular: SYNACKLimit{Rate: 1, Burst: burst}}
		})
		d6 := netip.MustParseAddr("2001:db8:5b0::9")
		start := time.Now()
		answered := 0
		for i := range 2 * burst {
			// Every SYN from another address of the same /64.
			src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, byte(i)})
			h6.inject(irregularSYN(src, d6, 40000, 23, uint32(i)))
			answered += h6.drainSYNACKs(src)
		}
		if answered > burst+slack(start, 1) {
			t.Errorf("one /64, %d addresses: %d SYN-ACKs, want at most the burst %d", 2*burst, answered, burst)
		}
		other := netip.MustParseAddr("2001:db8:8::1")
		h6.inject(irregularSYN(other, d6, 40000, 23, 1))
		if h6.drainSYNACKs(other) != 1 {
			t.Errorf("another /64 was not answered")
		}
	})
}

// TestSYNACKLimitSweep checks that the defaults never touch a normal scan:
// one source sweeping a /24 on eight ports (2,048 ZMap-like SYNs, as fast as
// the test sends them) gets every SYN answered. The negative control shows
// that the same sweep is capped with a small budget.
func TestSYNACKLimitSweep(t *testing.T) {
	ports := []uint16{22, 23, 80, 443, 2323, 5555, 8080, 8443}
	sweep := func(h *harness) int {
		src := netip.MustParseAddr("192.0.2.77")
		answered := 0
		for _, p := range ports {
			for i := range 256 {
				h.inject(irregularSYN(src, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 61000, p, uint32(i)))
			}
			answered += h.drainSYNACKs(src)
		}
		return answered
	}
	want := 256 * len(ports)
	if want > DefaultSYNIrregularBurst {
		t.Fatalf("the sweep (%d SYNs) exceeds the default burst %d: the defaults would touch it", want, DefaultSYNIrregularBurst)
	}
	h := newHarness(t, nil)
	if got := sweep(h); got != want {
		t.Errorf("default limits: %d of %d SYNs of a /24 sweep answered", got, want)
	}
	if d := h.st.Stats().DropSYNRateIrregular.Load() + h.st.Stats().DropSYNRateRegular.Load(); d != 0 {
		t.Errorf("default limits dropped %d SYNs of a /24 sweep", d)
	}
	small := newHarness(t, func(c *Config) {
		c.SYNACKLimits = &SYNACKLimits{Irregular: SYNACKLimit{Rate: 1, Burst: 100}}
	})
	start := time.Now()
	if got := sweep(small); got > 100+slack(start, 1) {
		t.Errorf("budget 100: %d SYNs answered, want about 100", got)
	}
}

// TestSYNACKLimitOff checks that rate 0 disables a class.
func TestSYNACKLimitOff(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SYNACKLimits = &SYNACKLimits{Regular: SYNACKLimit{Rate: 1, Burst: 1}}
	})
	src := netip.MustParseAddr("192.0.2.5")
	for i := range 50 {
		h.inject(irregularSYN(src, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 1234, 80, uint32(i)))
	}
	if got := h.drainSYNACKs(src); got != 50 {
		t.Errorf("irregular class off: %d of 50 SYNs answered", got)
	}
}

// TestGCRA checks the bucket arithmetic on a synthetic clock: the burst at
// once, nothing more, then one token per interval, and a full bucket again
// after a long pause (never more than the burst).
func TestGCRA(t *testing.T) {
	l := newSYNLimiter(SYNACKLimits{Irregular: SYNACKLimit{Rate: 10, Burst: 4}, TableEntries: 16})
	src := []byte{192, 0, 2, 1}
	t0 := l.epoch.Add(time.Hour)
	count := func(at time.Time, tries int) (n int) {
		for range tries {
			if l.allow(src, true, at) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		at    time.Time
		tries int
		want  int
	}{
		{"burst", t0, 10, 4},
		{"empty", t0.Add(50 * time.Millisecond), 10, 0},
		{"one interval", t0.Add(100 * time.Millisecond), 10, 1},
		{"three intervals", t0.Add(400 * time.Millisecond), 10, 3},
		{"long pause refills only the burst", t0.Add(time.Minute), 100, 4},
	} {
		if got := count(tc.at, tc.tries); got != tc.want {
			t.Errorf("%s: allow() true %d times, want %d", tc.name, got, tc.want)
		}
	}
	if !l.allow(src, false, t0) {
		t.Errorf("regular class is off but was limited")
	}
	if newSYNLimiter(SYNACKLimits{}) != nil {
		t.Errorf("both classes off: want no limiter")
	}
	if n := len(newSYNLimiter(SYNACKLimits{Regular: SYNACKLimit{Rate: 1, Burst: 1}, TableEntries: 1000}).tat); n != 2*512 {
		t.Errorf("1000 entries: table of %d buckets, want 1024 (512 entries, a power of two)", n)
	}
}

// TestSYNACKLimitsValidate checks the configuration's bounds.
func TestSYNACKLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    SYNACKLimits
		ok   bool
	}{
		{"defaults", DefaultSYNACKLimits(), true},
		{"off", SYNACKLimits{}, true},
		{"rate without burst", SYNACKLimits{Regular: SYNACKLimit{Rate: 5}}, false},
		{"negative rate", SYNACKLimits{Irregular: SYNACKLimit{Rate: -1, Burst: 1}}, false},
		{"table too big", SYNACKLimits{TableEntries: MaxSYNTableEntries + 1}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// BenchmarkSYNLimiter measures the limiter's cost per SYN (one keyed hash
// and one compare-and-swap) from random sources, in parallel as the TUN
// readers call it. It must not allocate. Each goroutine has its own
// sources: with the same sequence in each they would hit the same entry at
// the same time, which the readers of a flood from random sources do not.
func BenchmarkSYNLimiter(b *testing.B) {
	l := newSYNLimiter(DefaultSYNACKLimits())
	var seeds atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var src [4]byte
		x := 0x9e3779b9 + seeds.Add(1)*0x7f4a7c15
		now := time.Now()
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			src[0], src[1], src[2], src[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
			l.allow(src[:], x&1 == 0, now)
		}
	})
}

// BenchmarkInspectLimitedSYN measures the front end's whole path for a SYN
// from a source over its budget: parse, checksum, classify, limiter, drop.
// It is the path a reflection flood takes, and it must not allocate.
func BenchmarkInspectLimitedSYN(b *testing.B) {
	ch := newBenchStack(b, &SYNACKLimits{Irregular: SYNACKLimit{Rate: 1, Burst: 1}})
	pkt := irregularSYN(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), 1, 80, 1)
	var rec records.Packet
	ch.inspect(pkt, &rec)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec = records.Packet{Time: time.Now()}
		ch.inspect(pkt, &rec)
	}
	b.StopTimer()
	// A token per second refills: all but a handful were limited.
	if ch.stats.DropSYNRateIrregular.Load()+100 < uint64(b.N) {
		b.Fatalf("the SYNs were not limited")
	}
}

// newBenchStack is a stack on an in-memory link with no sink.
func newBenchStack(b *testing.B, l *SYNACKLimits) *Stack {
	st, err := New(Config{Link: channel.New(1024, 1500, ""), Prefixes: []netip.Prefix{telescope4, telescope6},
		Handle: func(c net.Conn, _ records.Flow) { c.Close() }, SYNACKLimits: l})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	return st
}
