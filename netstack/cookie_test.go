package netstack

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/faketime"

	"github.com/spoki-telescope/spoki/records"
)

func testJar(t *testing.T) (*cookieJar, *faketime.ManualClock) {
	t.Helper()
	clock := faketime.NewManualClock()
	// Start well past zero so that "older than the clock's start" exists.
	clock.Advance(time.Hour)
	j, err := newCookieJar(clock)
	if err != nil {
		t.Fatal(err)
	}
	return j, clock
}

var (
	cLocal  = netip.MustParseAddr("198.51.100.7").AsSlice()
	cRemote = netip.MustParseAddr("192.0.2.2").AsSlice()
)

// TestCookieValidity checks that a cookie is accepted for exactly the
// connection and SYN it was minted for.
func TestCookieValidity(t *testing.T) {
	j, _ := testJar(t)
	const seq = 123456
	cookie := j.create(cLocal, cRemote, 80, 40000, seq, encodeMSS(1460))
	for _, tc := range []struct {
		name          string
		local, remote []byte
		lport, rport  uint16
		cookie, seq   uint32
		want          bool
	}{
		{"same connection", cLocal, cRemote, 80, 40000, cookie, seq, true},
		{"other local port", cLocal, cRemote, 81, 40000, cookie, seq, false},
		{"other remote port", cLocal, cRemote, 80, 40001, cookie, seq, false},
		{"other local address", netip.MustParseAddr("198.51.100.8").AsSlice(), cRemote, 80, 40000, cookie, seq, false},
		{"other remote address", cLocal, netip.MustParseAddr("192.0.2.3").AsSlice(), 80, 40000, cookie, seq, false},
		// The MSS index sits in the low bits, so gVisor's format accepts a
		// sequence number a few below the SYN's; far off it never does.
		{"other sequence number", cLocal, cRemote, 80, 40000, cookie, seq + 1000, false},
		{"cookie off by one", cLocal, cRemote, 80, 40000, cookie + 1, seq, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := j.valid(tc.local, tc.remote, tc.lport, tc.rport, tc.cookie, tc.seq); got != tc.want {
				t.Errorf("valid = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCookieExpiry checks gVisor's window: cookies live two 64 s ticks.
func TestCookieExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration
		want bool
	}{
		{"fresh", 0, true},
		{"one minute", time.Minute, true},
		{"two ticks", 128 * time.Second, true},
		{"three ticks", 192 * time.Second, false},
		{"an hour", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, clock := testJar(t)
			cookie := j.create(cLocal, cRemote, 23, 5555, 99, 3)
			clock.Advance(tc.age)
			if got := j.valid(cLocal, cRemote, 23, 5555, cookie, 99); got != tc.want {
				t.Errorf("valid after %v = %v, want %v", tc.age, got, tc.want)
			}
		})
	}
}

// TestCookieForgery checks that guessed cookies are rejected: gVisor's
// format leaves a forger 4 chances in 2^24 per guess.
func TestCookieForgery(t *testing.T) {
	j, _ := testJar(t)
	r := rand.New(rand.NewPCG(1, 2))
	const guesses = 200000
	accepted := 0
	for range guesses {
		if j.valid(cLocal, cRemote, 80, uint16(r.Uint32()), r.Uint32(), r.Uint32()) {
			accepted++
		}
	}
	// Expected 200000*4/2^24*3 (three live ticks) ≈ 0.14.
	if accepted > 2 {
		t.Errorf("%d of %d random cookies accepted", accepted, guesses)
	}
}

// TestMSSEncoding checks the two cookie bits that carry the client's MSS.
func TestMSSEncoding(t *testing.T) {
	for _, tc := range []struct {
		mss  uint16
		want uint32
	}{{0, 0}, {536, 0}, {1299, 0}, {1300, 1}, {1440, 2}, {1459, 2}, {1460, 3}, {9000, 3}} {
		if got := encodeMSS(tc.mss); got != tc.want {
			t.Errorf("encodeMSS(%d) = %d, want %d", tc.mss, got, tc.want)
		}
	}
}

// BenchmarkSYN measures the front end's per-SYN work (parse, cookie,
// SYN-ACK encoded and written to a Device that discards it), and fails if
// it allocates.
func BenchmarkSYN(b *testing.B) {
	j, _ := testJar(&testing.T{})
	s := &Stack{cfg: Config{MTU: 1500, Prefixes: []netip.Prefix{telescope4}, MaxPayloadBytes: 1500}, jar: j, conns: newConnTable(1)}
	s.tun = discardLink()
	benchSYN(b, s, testSYN(mssOpt))
}

// benchSYN measures s answering the SYN pkt, and fails if it allocates.
func benchSYN(b *testing.B, s *Stack, pkt []byte) {
	b.Helper()
	if a := testing.AllocsPerRun(100, func() {
		var rec records.Packet
		s.inspect(pkt, &rec)
	}); a != 0 {
		b.Fatalf("%.1f allocations per SYN, want 0", a)
	}
	b.ReportAllocs()
	for b.Loop() {
		var rec records.Packet
		s.inspect(pkt, &rec)
	}
}

// BenchmarkSYNParallel runs the per-SYN work on every P at once, as the
// TUN queues do: the difference to BenchmarkSYN is what the readers cost
// each other (shared counters, the user id).
func BenchmarkSYNParallel(b *testing.B) {
	j, _ := testJar(&testing.T{})
	s := &Stack{cfg: Config{MTU: 1500, Prefixes: []netip.Prefix{telescope4}, MaxPayloadBytes: 1500}, jar: j, conns: newConnTable(1)}
	s.tun = discardLink()
	pkt := testSYN(mssOpt)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var rec records.Packet
			s.inspect(pkt, &rec)
		}
	})
}
