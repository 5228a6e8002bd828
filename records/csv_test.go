package records

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleDirs are where the real Spoki logs (Spoki's logs/example) are looked
// for: the copy in testdata, committed so that the test needs nothing
// outside the repository.
var exampleDirs = []string{"testdata/spoki-example-logs"}

// exampleFiles returns the example logs whose names match pattern, failing
// the test when none is there.
func exampleFiles(t *testing.T, pattern string) []string {
	t.Helper()
	for _, dir := range exampleDirs {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		if len(files) > 0 {
			return files
		}
	}
	t.Fatalf("no example logs matching %s in %v", pattern, exampleDirs)
	return nil
}

// roundTrip checks that every line of file re-encodes byte for byte: the
// header equals header, each row parses and encodes back to itself.
func roundTrip(t *testing.T, file, header string, encode func(line string) (string, error)) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		n++
		if n == 1 {
			if line != header {
				t.Fatalf("%s: header = %q, want %q", file, line, header)
			}
			continue
		}
		got, err := encode(line)
		if err != nil {
			t.Fatalf("%s:%d: %v", file, n, err)
		}
		if got != line+"\n" {
			t.Fatalf("%s:%d: re-encoded\n%q, want\n%q", file, n, got, line+"\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("%s: only %d lines", file, n)
	}
	t.Logf("%s: %d rows", filepath.Base(file), n-1)
}

func TestRawExampleRoundTrip(t *testing.T) {
	for _, file := range exampleFiles(t, "*.spoki.tcp.raw.*.csv") {
		roundTrip(t, file, RawHeader, func(line string) (string, error) {
			p, err := ParseRawRow(line)
			if err != nil {
				return "", err
			}
			return string(AppendRawRow(nil, &p)), nil
		})
	}
}

func TestReplyExampleRoundTrip(t *testing.T) {
	for _, file := range exampleFiles(t, "*.spoki.tcp.scamper.*.csv") {
		roundTrip(t, file, ReplyHeader, func(line string) (string, error) {
			r, err := ParseReplyRow(line)
			if err != nil {
				return "", err
			}
			return string(AppendReplyRow(nil, &r)), nil
		})
	}
}

// ms is 2021-10-13T22:35:31.122Z, the time of the rows of Spoki's example logs.
var ms = time.UnixMilli(1634162131122).UTC()

// withOptions sets p's options to kinds in wire order.
func withOptions(p Packet, kinds ...uint8) Packet {
	p.NumOptions = uint8(copy(p.Options[:], kinds))
	return p
}

func TestAppendRawRow(t *testing.T) {
	synBase := Packet{
		Time: ms.Add(999 * time.Microsecond), Proto: ProtoTCP, Flags: FlagSYN, WScale: -1,
		Src: netip.MustParseAddr("178.215.184.154"), Dst: netip.MustParseAddr("141.22.28.17"),
		IPID: 59277, TTL: 246, SrcPort: 17355, DstPort: 80, Seq: 1040324928, Window: 14600,
	}
	probed := synBase
	probed.Probed, probed.Method, probed.UserID, probed.ProbeAck, probed.NumProbes = true, MethodSYNACK, 134219915, 1040324929, 1
	linux := withOptions(synBase, optMSS, optSACKPerm, optTimestamp, optNOP, optWScale)
	ack := synBase
	ack.Flags, ack.Ack, ack.Payload = FlagACK|FlagPSH, 7, []byte("wget http://x/")
	v6 := synBase
	v6.Src, v6.Dst, v6.IPID = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ff:2"), 0
	udp := Packet{Time: ms, Proto: ProtoUDP, Src: synBase.Src, Dst: synBase.Dst, IPID: 1, TTL: 50,
		SrcPort: 5353, DstPort: 53, Payload: []byte{0xAB, 0x01}}
	udpProbed := udp
	udpProbed.Probed, udpProbed.UserID, udpProbed.NumProbes = true, 9, 5
	icmp := Packet{Time: ms, Proto: ProtoICMP, Src: synBase.Src, Dst: synBase.Dst, IPID: 2, TTL: 51,
		ICMPType: 8, ICMPCode: 0, Payload: []byte("ping")}

	tests := []struct {
		name string
		p    Packet
		want string
	}{
		{"irregular SYN, probed (Spoki's example)", probed,
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|||1|0|0|0|14600|true|tcp-synack|134219915|1040324929|0|1\n"},
		{"unprobed", synBase,
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|||1|0|0|0|14600|false|||||\n"},
		{"linux options reversed", linux,
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|window_scale:timestamp:sack_permitted:mss||1|0|0|0|14600|false|||||\n"},
		{"duplicates and unknown kinds once, nop/eol skipped",
			withOptions(synBase, optNOP, 30, optMSS, 31, optMSS, optEOL),
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|mss:other||1|0|0|0|14600|false|||||\n"},
		{"only nop", withOptions(synBase, optNOP, optNOP, optEOL),
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|||1|0|0|0|14600|false|||||\n"},
		{"payload lowercase hex, psh not logged", ack,
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|7|1040324928||7767657420687474703a2f2f782f|0|1|0|0|14600|false|||||\n"},
		{"IPv6", v6,
			"1634162131122|2001:db8::1|2001:db8::ff:2|0|246|tcp|17355|80|0|1040324928|||1|0|0|0|14600|false|||||\n"},
		{"UDP own columns", udp,
			"1634162131122|178.215.184.154|141.22.28.17|1|50|udp|5353|53|ab01|false|||\n"},
		{"UDP probed", udpProbed,
			"1634162131122|178.215.184.154|141.22.28.17|1|50|udp|5353|53|ab01|true||9|5\n"},
		{"ICMP type and code", icmp,
			"1634162131122|178.215.184.154|141.22.28.17|2|51|icmp|8|0|70696e67|false|||\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendRawRow(nil, &tc.p)); got != tc.want {
				t.Errorf("AppendRawRow() =\n%q, want\n%q", got, tc.want)
			}
			if n := strings.Count(tc.want, "|") + 1; n != strings.Count(RawHeaderFor(tc.p.Proto), "|")+1 {
				t.Errorf("row has %d columns, header %d", n, strings.Count(RawHeaderFor(tc.p.Proto), "|")+1)
			}
		})
	}
}

func TestParseRawRow(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Packet
	}{
		{"probed SYN with options and newline",
			"1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|window_scale:mss||1|0|0|0|14600|true|tcp-synack|134219915|1040324929|0|1\n",
			func() Packet {
				p := withOptions(Packet{Time: ms, Proto: ProtoTCP, Flags: FlagSYN, WScale: 0,
					Src: netip.MustParseAddr("178.215.184.154"), Dst: netip.MustParseAddr("141.22.28.17"),
					IPID: 59277, TTL: 246, SrcPort: 17355, DstPort: 80, Seq: 1040324928, Window: 14600,
					Probed: true, Method: MethodSYNACK, UserID: 134219915, ProbeAck: 1040324929, NumProbes: 1}, optMSS, optWScale)
				return p
			}()},
		{"RST with payload, uppercase hex accepted",
			"1|1.2.3.4|5.6.7.8|0|64|tcp|1|2|3|4||4142|0|1|1|1|0|true|tcp-rst|5|0|3|2",
			Packet{Time: time.UnixMilli(1).UTC(), Proto: ProtoTCP, Flags: FlagACK | FlagRST | FlagFIN, WScale: -1,
				Src: netip.MustParseAddr("1.2.3.4"), Dst: netip.MustParseAddr("5.6.7.8"), TTL: 64,
				SrcPort: 1, DstPort: 2, Ack: 3, Seq: 4, Payload: []byte("AB"), PayloadLen: 2,
				Probed: true, Method: MethodRST, UserID: 5, ProbeSeq: 3, NumProbes: 2}},
		{"ICMP",
			"1|::1|::2|0|64|icmp|128|0||false|||",
			Packet{Time: time.UnixMilli(1).UTC(), Proto: ProtoICMP, WScale: -1,
				Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::2"), TTL: 64, ICMPType: 128}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRawRow(tc.line)
			if err != nil {
				t.Fatalf("ParseRawRow() error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRawRow() =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestParseRawRowErrors(t *testing.T) {
	const good = "1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|||1|0|0|0|14600|false|||||"
	tests := []struct {
		name    string
		line    string
		wantMsg string
	}{
		{"empty", "", "raw tcp row has 1 columns, want 23"},
		{"header", RawHeader, `column 1 (ts) "ts"`},
		{"spoki UDP shift (22 columns)", "1|1.2.3.4|5.6.7.8|1|2|udp|3|4|aa||0|0|0|0|0|true|udp|5|0|0|5", "raw udp row has 21 columns, want 13"},
		{"too many columns", good + "|", "raw tcp row has 24 columns, want 23"},
		{"bad ttl", strings.Replace(good, "|246|", "|300|", 1), `column 5 (ttl) "300": value out of range`},
		{"bad address", strings.Replace(good, "141.22.28.17", "141.22.28", 1), `column 3 (daddr) "141.22.28": not an IP address`},
		{"bad option", strings.Replace(good, "0|1040324928||", "0|1040324928|mss:foo|", 1), `column 11 (options) "mss:foo": unknown option "foo"`},
		{"bad hex", strings.Replace(good, "1040324928|||", "1040324928||abc|", 1), `column 12 (payload) "abc"`},
		{"bad flag", strings.Replace(good, "||1|0|0|0|", "||2|0|0|0|", 1), `column 13 (syn) "2"`},
		{"bad probed", strings.Replace(good, "false", "no", 1), `column 18 (probed) "no"`},
		{"unprobed with userid", strings.Replace(good, "false|||||", "false||7|||", 1), `column 20 (userid) "7": set on an unprobed row`},
		{"unknown method", strings.Replace(good, "false|||||", "true|udp|1|0|0|5", 1), `column 19 (method) "udp": unknown method`},
		{"unknown proto", strings.Replace(good, "|tcp|", "|sctp|", 1), `column 6 (proto) "sctp"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRawRow(tc.line)
			if err == nil {
				t.Fatalf("ParseRawRow(%q) error = nil, want %q", tc.line, tc.wantMsg)
			}
			if !errors.Is(err, ErrMalformedRow) {
				t.Errorf("ParseRawRow() error %v does not wrap ErrMalformedRow", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("ParseRawRow() error = %q, want it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestReplyRow(t *testing.T) {
	tests := []struct {
		name string
		r    Reply
		want string
	}{
		{"usec not zero-padded (as Spoki)",
			Reply{Time: time.Unix(1634165865, 5883999).UTC(), Method: MethodSYNACK, UserID: 134219915, NumProbes: 1,
				Src: netip.MustParseAddr("141.22.28.17"), Dst: netip.MustParseAddr("178.215.184.154"), SrcPort: 80, DstPort: 17355},
			"1634165865|5883|tcp-synack|134219915|1|141.22.28.17|178.215.184.154|80|17355\n"},
		{"rst, zero usec",
			Reply{Time: time.Unix(1634162136, 0).UTC(), Method: MethodRST, UserID: 134219917, NumProbes: 2,
				Src: netip.MustParseAddr("141.22.28.17"), Dst: netip.MustParseAddr("178.215.184.154"), SrcPort: 80, DstPort: 32937},
			"1634162136|0|tcp-rst|134219917|2|141.22.28.17|178.215.184.154|80|32937\n"},
		{"front end's ack of a handshake ack",
			Reply{Time: time.Unix(1634162136, 7).UTC(), Method: MethodACK, UserID: 9, NumProbes: 1,
				Src: netip.MustParseAddr("198.51.100.42"), Dst: netip.MustParseAddr("192.0.2.100"), SrcPort: 42, DstPort: 41725},
			"1634162136|0|tcp-ack|9|1|198.51.100.42|192.0.2.100|42|41725\n"},
		{"reset ending a session",
			Reply{Time: time.Unix(1634162137, 0).UTC(), Method: MethodSessionRST, UserID: 9, NumProbes: 1,
				Src: netip.MustParseAddr("198.51.100.42"), Dst: netip.MustParseAddr("192.0.2.100"), SrcPort: 42, DstPort: 41725},
			"1634162137|0|tcp-session-rst|9|1|198.51.100.42|192.0.2.100|42|41725\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendReplyRow(nil, &tc.r))
			if got != tc.want {
				t.Fatalf("AppendReplyRow() = %q, want %q", got, tc.want)
			}
			back, err := ParseReplyRow(got)
			if err != nil {
				t.Fatalf("ParseReplyRow(%q) error %v", got, err)
			}
			want := tc.r
			want.Time = want.Time.Truncate(time.Microsecond)
			if !reflect.DeepEqual(back, want) {
				t.Errorf("ParseReplyRow() = %+v, want %+v", back, want)
			}
		})
	}
	for _, bad := range []struct{ name, line, wantMsg string }{
		{"8 columns", "1|2|tcp-rst|3|4|1.2.3.4|5.6.7.8|9", "reply row has 8 columns, want 9"},
		{"usec too big", "1|1000000|tcp-rst|3|4|1.2.3.4|5.6.7.8|9|10", `column 2 (start usec) "1000000"`},
		{"bad dport", "1|2|tcp-rst|3|4|1.2.3.4|5.6.7.8|9|x", `column 9 (dport) "x"`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := ParseReplyRow(bad.line)
			if err == nil || !errors.Is(err, ErrMalformedRow) || !strings.Contains(err.Error(), bad.wantMsg) {
				t.Errorf("ParseReplyRow(%q) error = %v, want %q", bad.line, err, bad.wantMsg)
			}
		})
	}
}

func TestEncodersDoNotAllocate(t *testing.T) {
	p := withOptions(Packet{Time: ms, Proto: ProtoTCP, Flags: FlagSYN, WScale: 7, MSS: 1460,
		Src: netip.MustParseAddr("178.215.184.154"), Dst: netip.MustParseAddr("2001:db8::1"),
		Payload: []byte("hello"), Probed: true, Method: MethodSYNACK},
		optMSS, optSACKPerm, optTimestamp, optNOP, optWScale)
	r := Reply{Time: ms, Method: MethodRST, Src: p.Src, Dst: p.Dst}
	buf := make([]byte, 0, 4096)
	tests := []struct {
		name string
		f    func()
	}{
		{"AppendRawRow", func() { buf = AppendRawRow(buf[:0], &p) }},
		{"AppendReplyRow", func() { buf = AppendReplyRow(buf[:0], &r) }},
		{"AppendSYNEvent", func() { buf = AppendSYNEvent(buf[:0], &p) }},
		{"Irregular", func() { Irregular(&p) }},
		{"Fingerprint", func() { Fingerprint(&p) }},
		{"Reasons.Names", func() { _ = Reasons(7).Names() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.f); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tc.name, n)
			}
		})
	}
}

// FuzzParseRawRow checks that the parser never panics and that whatever it
// accepts encodes to a row that parses to the same packet.
func FuzzParseRawRow(f *testing.F) {
	f.Add("1634162131122|178.215.184.154|141.22.28.17|59277|246|tcp|17355|80|0|1040324928|window_scale:timestamp:sack_permitted:mss||1|0|0|0|14600|true|tcp-synack|134219915|1040324929|0|1")
	f.Add("1|::1|::2|0|64|icmp|128|0|00ff|false|||")
	f.Add("1|1.2.3.4|5.6.7.8|1|2|udp|3|4|aa|true|tcp-rst|5|5\n")
	f.Fuzz(func(t *testing.T, line string) {
		p, err := ParseRawRow(line)
		if err != nil {
			return
		}
		row := AppendRawRow(nil, &p)
		q, err := ParseRawRow(string(row))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", row, err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip of %q:\n%+v\n%+v", row, p, q)
		}
	})
}
