package records

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkEncodeSYN measures the encoders of a SYN's three records alone,
// into a reused buffer: what is left of filesink's BenchmarkRecordsPerSYN
// without the write(2) of the bytes.
func BenchmarkEncodeSYN(b *testing.B) {
	p := Packet{
		Time: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC), Proto: ProtoTCP, Flags: FlagSYN,
		Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.10"),
		TTL: 50, IPID: 54321, SrcPort: 40000, DstPort: 80, Seq: 1, Window: 64240,
		NumOptions: 5, Options: [MaxOptions]uint8{2, 4, 8, 1, 3}, MSS: 1460, WScale: 7,
	}
	r := Reply{Time: p.Time, Method: MethodSYNACK, UserID: 7, NumProbes: 1,
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort}
	cases := []struct {
		name string
		enc  func(dst []byte) []byte
	}{
		{"raw", func(dst []byte) []byte { return AppendRawRow(dst, &p) }},
		{"reply", func(dst []byte) []byte { return AppendReplyRow(dst, &r) }},
		{"syn-event", func(dst []byte) []byte { return AppendSYNEvent(dst, &p) }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.Seq = uint32(i)
				buf = tc.enc(buf[:0])
			}
			b.ReportMetric(float64(len(buf)), "B/SYN")
		})
	}
}
