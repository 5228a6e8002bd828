package records

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// edgeU32 are the values around digit-count changes and the ends of the
// uint8, uint16 and uint32 fields.
var edgeU32 = []uint32{0, 1, 9, 10, 99, 100, 101, 255, 256, 999, 1000, 9999, 10000, 54321,
	65535, 65536, 99999, 999999999, 1000000000, math.MaxUint32 - 1, math.MaxUint32}

// pick returns an edge value half of the time, else a random one, cut to
// bits.
func pick(rng *rand.Rand, bits uint) uint32 {
	if rng.IntN(2) == 0 {
		return edgeU32[rng.IntN(len(edgeU32))] & (1<<bits - 1)
	}
	return rng.Uint32() >> (32 - bits) >> rng.UintN(bits)
}

// randomEnd returns an IPv4, v4-mapped, zone-less or zoned IPv6 address,
// or the unspecified ones.
func randomEnd(rng *rand.Rand) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:], rng.Uint64())
	binary.BigEndian.PutUint64(a[8:], rng.Uint64())
	switch rng.IntN(10) {
	case 0, 1, 2, 3:
		return netip.AddrFrom4([4]byte(a[:4]))
	case 4:
		return netip.AddrFrom4([4]byte{0, 0, 0, byte(rng.IntN(256))})
	case 5:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(a[:4])).As16())
	case 6:
		return netip.AddrFrom16(randomV6(rng))
	case 7:
		return netip.AddrFrom16(randomV6(rng)).WithZone("tun0")
	case 8:
		return netip.IPv6Unspecified()
	}
	return netip.AddrFrom16(a)
}

// randomTime returns a time anywhere in the fast range, near a second,
// day or year boundary, or (rarely) outside the fast range.
func randomTime(rng *rand.Rand) time.Time {
	switch rng.IntN(8) {
	case 0:
		y := 1 + rng.IntN(9999)
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(4e9) - 2e9))
	case 1:
		d := time.Date(2024, 2, 28, 0, 0, 0, 0, time.UTC).AddDate(rng.IntN(9)*100-400, 0, rng.IntN(3))
		return d.Add(time.Duration(rng.Int64N(4e9) - 2e9))
	case 2:
		return time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9))
	case 3:
		return time.Unix(minFastUnix+rng.Int64N(maxFastUnix-minFastUnix+1), rng.Int64N(1e9))
	}
	return time.Unix(1764064800+rng.Int64N(86400*400), rng.Int64N(1e9)).In(time.FixedZone("x", 3600))
}

// randomPacket returns a packet with random fields, edge values mixed in.
func randomPacket(rng *rand.Rand) Packet {
	p := Packet{
		Time: randomTime(rng), Proto: ProtoTCP, Flags: uint8(rng.Uint32()),
		Src: randomEnd(rng), Dst: randomEnd(rng),
		IPID: uint16(pick(rng, 16)), TTL: uint8(pick(rng, 8)),
		SrcPort: uint16(pick(rng, 16)), DstPort: uint16(pick(rng, 16)),
		Seq: pick(rng, 32), Ack: pick(rng, 32), Window: uint16(pick(rng, 16)),
		MSS: uint16(pick(rng, 16)), WScale: int8(rng.IntN(20) - 5),
		ICMPType: uint8(pick(rng, 8)), ICMPCode: uint8(pick(rng, 8)), ICMPRest: pick(rng, 32),
		Fragment: rng.IntN(8) == 0, Probed: rng.IntN(2) == 0, Method: Method(rng.IntN(int(lastMethod) + 1)),
		UserID: pick(rng, 32), ProbeAck: pick(rng, 32), ProbeSeq: pick(rng, 32), NumProbes: uint8(pick(rng, 8)),
	}
	if rng.IntN(4) == 0 {
		p.Proto = Proto(rng.IntN(4))
	}
	p.NumOptions = uint8(rng.IntN(MaxOptions + 2))
	p.OptionsTruncated = p.NumOptions > MaxOptions
	kinds := []uint8{optEOL, optNOP, optMSS, optWScale, optSACKPerm, optSACK, optTimestamp}
	for i := range p.Options {
		if rng.IntN(5) == 0 {
			p.Options[i] = uint8(pick(rng, 8))
		} else {
			p.Options[i] = kinds[rng.IntN(len(kinds))]
		}
	}
	if rng.IntN(5) == 0 {
		p.Payload = make([]byte, rng.IntN(40))
		for i := range p.Payload {
			p.Payload[i] = byte(rng.Uint32())
		}
		p.PayloadLen = len(p.Payload) + rng.IntN(3)
	}
	return p
}

// checkEncoders compares the encoders of p (and of its reply) with the
// general code, appending to a buffer that already holds text.
func checkEncoders(t *testing.T, p *Packet) {
	t.Helper()
	pre := []byte("prefix\n")
	if got, want := string(AppendRawRow(pre[:len(pre):len(pre)], p)), string(refAppendRawRow(pre[:len(pre):len(pre)], p)); got != want {
		t.Fatalf("AppendRawRow(%+v)\n got %q\nwant %q", *p, got, want)
	}
	r := Reply{Time: p.Time, Method: p.Method, UserID: p.UserID, NumProbes: p.NumProbes,
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort}
	if r.Time.Unix() >= 0 { // Spoki's reply rows have no negative times (usec of one is negative)
		if got, want := string(AppendReplyRow(nil, &r)), string(refAppendReplyRow(nil, &r)); got != want {
			t.Fatalf("AppendReplyRow(%+v)\n got %q\nwant %q", r, got, want)
		}
	}
	if p.Proto == ProtoTCP {
		if got, want := string(AppendSYNEvent(pre[:len(pre):len(pre)], p)), string(refAppendSYNEvent(pre[:len(pre):len(pre)], p)); got != want {
			t.Fatalf("AppendSYNEvent(%+v)\n got %q\nwant %q", *p, got, want)
		}
	}
}

// TestEncodersMatchReference compares the raw row, reply row and `syn`
// event with the general code (ref_test.go) over random packets with edge
// values, every address kind and times across second, day and year
// boundaries, with and without an Origin.
func TestEncodersMatchReference(t *testing.T) {
	old := CurrentOrigin()
	t.Cleanup(func() { SetOrigin(old) })
	rng := rand.New(rand.NewPCG(11, 12))
	// Every scanner fingerprint and reason set, whatever the draw gives.
	var fixed []Packet
	for _, ipid := range []uint16{54321, 1} {
		for _, ttl := range []uint8{250, 64} {
			for _, opts := range [][]uint8{nil, {optNOP, optEOL}, {optMSS}, {optMSS, optSACKPerm, optTimestamp, optNOP, optWScale}} {
				p := withOptions(syn(), opts...)
				p.IPID, p.TTL, p.Window = ipid, ttl, 1024
				fixed = append(fixed, p)
				d := p.Dst.As4()
				p.Seq = binary.BigEndian.Uint32(d[:]) // mirai
				fixed = append(fixed, p)
				p.Seq = 77
				p.IPID = uint16(binary.BigEndian.Uint32(d[:]) ^ uint32(p.DstPort) ^ p.Seq) // masscan
				fixed = append(fixed, p)
			}
		}
	}
	for _, o := range []Origin{{}, {Host: "sensor-1", CommunityIDSeed: 7}} {
		SetOrigin(o)
		seen := map[[2]uint8]bool{}
		for _, p := range fixed {
			_, r := Irregular(&p)
			seen[[2]uint8{uint8(r), uint8(Fingerprint(&p))}] = true
			checkEncoders(t, &p)
		}
		if len(seen) < 8+4 {
			t.Fatalf("the fixed SYNs make only %d (reasons, scanner) pairs", len(seen))
		}
		for range 100000 {
			p := randomPacket(rng)
			checkEncoders(t, &p)
		}
	}
}

// TestReplyRowNegativeTime pins the reply row of a time before 1970 to the
// general code's text (a negative microsecond column) now that both
// columns are formatted by appendInt.
func TestReplyRowNegativeTime(t *testing.T) {
	for _, tm := range []time.Time{time.Unix(-1, 1000), time.Unix(-1e10, 999999999), time.Unix(0, 0)} {
		r := Reply{Time: tm}
		if got, want := string(AppendReplyRow(nil, &r)), string(refAppendReplyRow(nil, &r)); got != want {
			t.Errorf("AppendReplyRow(%v) = %q, want %q", tm, got, want)
		}
	}
}

// TestFlowIDMatchesReference compares flowID with the byte-at-a-time FNV
// loop over random flows of every address kind and protocol.
func TestFlowIDMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	ends := []netip.AddrPort{{}, netip.AddrPortFrom(netip.Addr{}, 80)}
	for range 200000 {
		src := netip.AddrPortFrom(randomEnd(rng), uint16(pick(rng, 16)))
		dst := netip.AddrPortFrom(randomEnd(rng), uint16(pick(rng, 16)))
		if rng.IntN(50) == 0 {
			dst = ends[rng.IntN(len(ends))]
		}
		proto, isn := uint8(pick(rng, 8)), pick(rng, 32)
		if got, want := flowID(proto, src, dst, isn), refFlowID(proto, src, dst, isn); got != want {
			t.Fatalf("flowID(%d, %v, %v, %d) = %d, the reference %d", proto, src, dst, isn, got, want)
		}
	}
}

// TestAppendTimestampSequential walks times in steps shorter and longer
// than a second across day, month, year and century boundaries (leap years
// and 2100's non-leap February included), forwards and back, so that the
// cached day is used, replaced and stale in turn.
func TestAppendTimestampSequential(t *testing.T) {
	starts := []time.Time{
		time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC), time.Date(2024, 2, 28, 23, 59, 0, 0, time.UTC),
		time.Date(2100, 2, 28, 23, 59, 0, 0, time.UTC), time.Date(2000, 2, 29, 23, 59, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC),
	}
	for _, start := range starts {
		for _, step := range []time.Duration{-86399999 * time.Microsecond, -1, 1, 999999 * time.Microsecond, 37 * time.Second, 86400*time.Second + 1} {
			tm := start
			for range 200 {
				got := string(appendTimestamp(nil, tm))
				if want := tm.UTC().Format(TimestampLayout); got != want {
					t.Fatalf("appendTimestamp(%v) = %s, want %s", tm, got, want)
				}
				tm = tm.Add(step)
			}
		}
	}
}

// FuzzEncodersMatchReference compares the encoders with the general code
// for fuzzed fields.
func FuzzEncodersMatchReference(f *testing.F) {
	f.Add(int64(1764064800123456789), []byte{198, 51, 100, 7}, []byte{192, 0, 2, 10}, uint16(40000), uint16(80), uint32(1), uint16(54321), uint8(250), []byte{})
	f.Add(int64(-1), []byte{0x20, 1, 0xd, 0xb8, 15: 1}, []byte{15: 0}, uint16(0), uint16(65535), uint32(math.MaxUint32), uint16(0), uint8(64), []byte{2, 4, 8, 1, 3, 99})
	f.Fuzz(func(t *testing.T, nanos int64, src, dst []byte, sport, dport uint16, seq uint32, ipid uint16, ttl uint8, opts []byte) {
		addr := func(b []byte) netip.Addr {
			if len(b) == 4 {
				return netip.AddrFrom4([4]byte(b))
			}
			var a [16]byte
			copy(a[:], b)
			return netip.AddrFrom16(a)
		}
		p := Packet{Time: time.Unix(0, nanos), Proto: ProtoTCP, Flags: FlagSYN, Src: addr(src), Dst: addr(dst),
			SrcPort: sport, DstPort: dport, Seq: seq, Ack: ^seq, IPID: ipid, TTL: ttl, Window: ipid ^ 0x5555,
			MSS: dport, WScale: int8(ttl), Probed: true, Method: MethodSYNACK, UserID: seq * 7, NumProbes: 1}
		p.NumOptions = uint8(copy(p.Options[:], opts))
		p.OptionsTruncated = len(opts) > MaxOptions
		checkEncoders(t, &p)
	})
}

// TestAppendTimestampConcurrent formats times of different days from
// several goroutines at once, so that the shared day cache is replaced
// under the others' feet: every text must still be right.
func TestAppendTimestampConcurrent(t *testing.T) {
	errs := make(chan string, 4)
	for g := range 4 {
		go func() {
			tm := time.Date(2020+g, 2, 28, 23, 59, 59, 0, time.UTC)
			var buf []byte
			for i := range 20000 {
				at := tm.Add(time.Duration(i%3) * 24 * time.Hour)
				buf = appendTimestamp(buf[:0], at)
				if want := at.Format(TimestampLayout); string(buf) != want {
					errs <- string(buf) + " != " + want
					return
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

// TestEncodersGrowShortBuffers appends every encoder's output to buffers
// with no, little and just enough spare capacity, where the fast paths'
// word writes must grow dst rather than write past it.
func TestEncodersGrowShortBuffers(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for range 2000 {
		p := randomPacket(rng)
		p.Proto = ProtoTCP
		want := string(refAppendSYNEvent(nil, &p))
		for extra := range len(want) + 20 {
			buf := make([]byte, 3, 3+extra)
			if got := string(AppendSYNEvent(buf, &p)); got[3:] != want {
				t.Fatalf("AppendSYNEvent into cap %d: %q, want %q", cap(buf), got[3:], want)
			}
		}
		want = string(refAppendRawRow(nil, &p))
		for extra := range len(want) + 20 {
			buf := make([]byte, 3, 3+extra)
			if got := string(AppendRawRow(buf, &p)); got[3:] != want {
				t.Fatalf("AppendRawRow into cap %d: %q, want %q", cap(buf), got[3:], want)
			}
		}
	}
}
