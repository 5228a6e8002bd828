package records

import (
	"net/netip"
	"reflect"
	"testing"
)

// syn returns a Linux-like SYN from 198.51.100.7 to 192.0.2.10:80 that no
// rule matches, for the tests to change one field at a time.
func syn() Packet {
	return withOptions(Packet{
		Proto: ProtoTCP, Flags: FlagSYN, WScale: 7, MSS: 1460,
		Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.10"),
		IPID: 4242, TTL: 52, SrcPort: 40000, DstPort: 80, Seq: 123456789, Window: 64240,
	}, optMSS, optSACKPerm, optTimestamp, optNOP, optWScale)
}

// dst192_0_2_10 is 192.0.2.10 as a uint32.
const dst192_0_2_10 = 192<<24 | 0<<16 | 2<<8 | 10

func TestIrregular(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(p *Packet)
		want    bool
		reasons Reasons
		names   []string
	}{
		{"regular linux SYN", func(p *Packet) {}, false, 0, []string{}},
		{"zmap ipid", func(p *Packet) { p.IPID = 54321 }, true, ReasonIPID54321, []string{"ipid_54321"}},
		{"ttl 201", func(p *Packet) { p.TTL = 201 }, true, ReasonTTLOver200, []string{"ttl_gt_200"}},
		{"ttl 200 is regular", func(p *Packet) { p.TTL = 200 }, false, 0, []string{}},
		{"no options", func(p *Packet) { p.NumOptions = 0 }, true, ReasonNoTCPOptions, []string{"no_tcp_options"}},
		{"only nop and eol", func(p *Packet) { *p = withOptions(*p, optNOP, optNOP, optEOL) }, true, ReasonNoTCPOptions, []string{"no_tcp_options"}},
		{"truncated list has options", func(p *Packet) { *p = withOptions(*p, optNOP); p.OptionsTruncated = true }, false, 0, []string{}},
		{"all three, in fixed order", func(p *Packet) { p.IPID, p.TTL, p.NumOptions = 54321, 255, 0 }, true,
			ReasonIPID54321 | ReasonTTLOver200 | ReasonNoTCPOptions, []string{"ipid_54321", "ttl_gt_200", "no_tcp_options"}},
		{"UDP without options is regular", func(p *Packet) { p.Proto, p.NumOptions = ProtoUDP, 0 }, false, 0, []string{}},
		{"ICMP ttl 255", func(p *Packet) { p.Proto, p.NumOptions, p.TTL = ProtoICMP, 0, 255 }, true, ReasonTTLOver200, []string{"ttl_gt_200"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := syn()
			tc.edit(&p)
			got, reasons := Irregular(&p)
			if got != tc.want || reasons != tc.reasons {
				t.Errorf("Irregular() = %v, %b, want %v, %b", got, reasons, tc.want, tc.reasons)
			}
			if names := reasons.Names(); !reflect.DeepEqual(names, tc.names) {
				t.Errorf("Names() = %q, want %q", names, tc.names)
			}
		})
	}
}

func TestReasonsAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		r    Reasons
		want string
	}{
		{"none", 0, `[]`},
		{"one", ReasonNoTCPOptions, `["no_tcp_options"]`},
		{"all", ReasonIPID54321 | ReasonTTLOver200 | ReasonNoTCPOptions, `["ipid_54321","ttl_gt_200","no_tcp_options"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.r.AppendJSON(nil)); got != tc.want {
				t.Errorf("AppendJSON() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *Packet)
		want Scanner
	}{
		{"linux SYN", func(p *Packet) {}, ScannerUnknown},
		{"zmap", func(p *Packet) { p.IPID, p.NumOptions, p.Window = 54321, 0, 65535 }, ScannerZMap},
		{"zmap wins over mirai", func(p *Packet) { p.IPID, p.Seq = 54321, dst192_0_2_10 }, ScannerZMap},
		{"zmap UDP", func(p *Packet) { p.Proto, p.IPID = ProtoUDP, 54321 }, ScannerZMap},
		{"masscan", func(p *Packet) {
			p.NumOptions, p.Window, p.Seq = 0, 1024, 0xdeadbeef
			p.IPID = uint16((dst192_0_2_10 ^ 80 ^ 0xdeadbeef) & 0xffff)
		}, ScannerMasscan},
		{"masscan high bits do not cancel (analyzer.py misses it)", func(p *Packet) {
			p.Seq = 0x12340000 | 0x0101
			p.IPID = uint16((dst192_0_2_10 ^ 80 ^ p.Seq) & 0xffff)
		}, ScannerMasscan},
		{"mirai", func(p *Packet) { p.Seq, p.DstPort, p.NumOptions = dst192_0_2_10, 23, 0 }, ScannerMirai},
		{"mirai on another port", func(p *Packet) { p.Seq, p.DstPort = dst192_0_2_10, 8080 }, ScannerMirai},
		{"mirai needs IPv4", func(p *Packet) { p.Seq, p.Dst = dst192_0_2_10, netip.MustParseAddr("2001:db8::1") }, ScannerUnknown},
		{"nmap -sS", func(p *Packet) { *p = withOptions(*p, optMSS); p.Window = 1024 }, ScannerNmap},
		{"nmap old window", func(p *Packet) { *p = withOptions(*p, optMSS); p.Window = 3072 }, ScannerNmap},
		{"nmap IPv6", func(p *Packet) {
			*p = withOptions(*p, optMSS)
			p.Window, p.IPID, p.Dst = 4096, 0, netip.MustParseAddr("2001:db8::1")
		}, ScannerNmap},
		{"MSS only, other window", func(p *Packet) { *p = withOptions(*p, optMSS); p.Window = 5120 }, ScannerUnknown},
		{"window 1024 but more options", func(p *Packet) { *p = withOptions(*p, optMSS, optNOP); p.Window = 1024 }, ScannerUnknown},
		{"UDP never masscan", func(p *Packet) {
			p.Proto, p.Seq = ProtoUDP, 0
			p.IPID = uint16((dst192_0_2_10 ^ 80) & 0xffff)
		}, ScannerUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := syn()
			tc.edit(&p)
			if got := Fingerprint(&p); got != tc.want {
				t.Errorf("Fingerprint() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScannerString(t *testing.T) {
	tests := []struct {
		name string
		s    Scanner
		want string
	}{
		{"unknown", ScannerUnknown, "unknown"},
		{"zmap", ScannerZMap, "zmap"},
		{"masscan", ScannerMasscan, "masscan"},
		{"mirai", ScannerMirai, "mirai"},
		{"nmap", ScannerNmap, "nmap"},
		{"out of range", Scanner(200), "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Errorf("Scanner(%d).String() = %q, want %q", tc.s, got, tc.want)
			}
		})
	}
}
