package scenarios

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// header is the set-up most test scripts start with.
const header = "src 192.0.2.100\nsrc 2001:db8:1::100\ndst 198.51.100.7:80\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		msg  string
	}{
		{"bad flags", header + "0 > SX 0\n", 4, `bad flags "SX"`},
		{"unknown field", header + "\n0 > S 0 foo 3\n", 5, "unknown field foo"},
		{"bad time", header + "+x > S 0\n", 4, `bad time "+x"`},
		{"unknown directive", header + "listen 80\n", 4, `unknown directive "listen"`},
		{"no dst", "src 192.0.2.100\n0 > S 0\n", 2, "no destination"},
		{"no src", "dst 198.51.100.7:80\n0 > S 0\n", 2, "no src address of its family"},
		{"unknown capture", header + "0 > . 1 ack $synack.seq+1\n", 4, "refers to no earlier `as synack` capture"},
		{"unknown capture field", header + "0 < S. 0 as s\n+0 > . 1 ack $s.foo\n", 5, `unknown field "foo"`},
		{"seq self reference", header + "0 > S $seq\n", 4, "$seq is this packet's own sequence number"},
		{"range length", header + "0 > P. 1:5(3) ack 1 \"abcd\"\n", 4, "LEN must be END-START = 4"},
		{"range payload", header + "0 > P. 1:5(4) ack 1 \"abc\"\n", 4, "says 4 bytes, the payload has 3"},
		{"unterminated string", header + "0 > P. 1 \"abc\n", 4, "unterminated string"},
		{"bad option", header + "0 > S 0 <mss 1460,foo>\n", 4, `unknown option "foo"`},
		{"options too long", header + "0 > S 0 <TS val 1 ecr 1,TS val 1 ecr 1,TS val 1 ecr 1,TS val 1 ecr 1,nop>\n", 4, "at most 40 fit"},
		{"as on send", header + "0 > S 0 as x\n", 4, "belongs on a `<` line"},
		{"expect junk", header + "0 expect none now\n", 4, "only `within DUR` may end"},
		{"event cond", header + "0 expect event syn scanner\n", 4, "want =, != or ~"},
		{"event value", header + "0 expect event syn scanner=\n", 4, "value expected"},
		{"bad within", header + "0 expect none within forever\n", 4, `bad duration "forever"`},
		{"flow twice", header + "flow a sport 1\nflow a sport 2\n", 5, "already declared at line 4"},
		{"isn refs", header + "0 < S. 0 as s\nflow a isn $s.seq\n", 5, "isn may refer only to"},
		{"dst after packets", header + "0 > S 0\ndst 198.51.100.8:80\n", 5, "declare a `flow` instead"},
		{"include without fs", "include common/lab.inc\n", 1, "no file system"},
		{"bad dst", "dst 198.51.100.7\n", 1, "bad address and port"},
		{"time then directive", header + "+1 src 192.0.2.5\n", 4, "want `>`, `<` or `expect` after the time"},
		{"range on send", header + "+0...2 > S 0\n", 4, "a time range is for `<` lines"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.pkt", []byte(tc.src))
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) = %v, want a *SyntaxError", tc.src, err)
			}
			if se.Line != tc.line || se.File != "t.pkt" || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("Parse(%q) = %v, want t.pkt:%d: ...%s...", tc.src, err, tc.line, tc.msg)
			}
		})
	}
}

func TestParseScript(t *testing.T) {
	src := `// What it checks.
// Second line.
// want-fail: something
// telescope: --pure --max-conns 1
include common/lab.inc
dst [2001:db8:5b0::7]:443

flow a sport 22734 isn $dst ^ 5
0     > S 0 win 8192 ttl 231 ipid 61602 <mss 1460,nop,wscale 6,TS val 1 ecr 0,sackOK,eol>
+0...3 < S. 0 ack 1 <mss 1440> as r
+.5   > P. 1:4(3) ack $r.seq+1 "ab" hex "63" df
+0    expect no retransmit within 1.5s
+0    expect event session app_proto=http payload~"GET /" irregular_reasons=a,b within 10s
`
	fsys := fstest.MapFS{
		"x/t.pkt":          {Data: []byte(src)},
		"x/common/lab.inc": {Data: []byte("src 192.0.2.100\nsrc 2001:db8:1::100\n")},
	}
	s, err := ParseFile(fsys, "x/t.pkt")
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	if s.Doc != "What it checks.\nSecond line.\nwant-fail: something\ntelescope: --pure --max-conns 1" || s.WantFail != "something" {
		t.Errorf("Doc = %q, WantFail = %q", s.Doc, s.WantFail)
	}
	if want := []string{"--pure", "--max-conns", "1"}; !slices.Equal(s.Telescope, want) {
		t.Errorf("Telescope = %q, want %q", s.Telescope, want)
	}
	if len(s.Flows) != 1 || s.Flows[0].Sport != 22734 || s.Flows[0].Dst.String() != "[2001:db8:5b0::7]:443" {
		t.Fatalf("Flows = %+v", s.Flows)
	}
	if len(s.Steps) != 5 {
		t.Fatalf("%d steps, want 5", len(s.Steps))
	}
	send := s.Steps[0].Packet
	if send.Flags != FlagSYN || len(send.Options) != 6 || send.Options[3].Kind != optTS || send.Win.String() != "8192" {
		t.Errorf("step 1 = %+v", send)
	}
	recv := s.Steps[1]
	if recv.Within.Seconds() != 3 || recv.Capture != "r" || recv.Packet.Flags != FlagSYN|FlagACK || recv.Line != 10 {
		t.Errorf("step 2 = %+v", recv)
	}
	data := s.Steps[2]
	if string(data.Packet.Payload) != "abc" || !data.Packet.DF || !data.Packet.Ack.Absolute() || data.Packet.Seq.Absolute() || data.Time.At.Seconds() != 0.5 {
		t.Errorf("step 3 = %+v %+v", data, data.Packet)
	}
	ev := s.Steps[4].Event
	want := []Cond{{"app_proto", OpEq, "http"}, {"payload", OpContains, "GET /"}, {"irregular_reasons", OpEq, "a,b"}}
	if ev.Type != "session" || len(ev.Conds) != 3 || ev.Conds[0] != want[0] || ev.Conds[1] != want[1] || ev.Conds[2] != want[2] {
		t.Errorf("event = %+v, want conds %+v", ev, want)
	}
}

func TestExprEval(t *testing.T) {
	tests := []struct {
		name, src string
		want      uint64
	}{
		{"precedence", "1+2^3", (1 + 2) ^ 3},
		{"parens", "1+(2^3)", 1 + (2 ^ 3)},
		{"masscan", "($dst ^ $dport ^ $seq) & 0xffff", (0xc6336407 ^ 80 ^ 0x12345678) & 0xffff},
		{"shift", "3<<24", 3 << 24},
		{"minus", "$seq+1-0x03000000", 0x12345679 - 0x03000000},
	}
	vals := map[string]uint64{"dst": 0xc6336407, "dport": 80, "seq": 0x12345678}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := lexLine(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			e, err := parseExpr(toks, &i)
			if err != nil || i != len(toks) {
				t.Fatalf("parseExpr(%q) = %v, stopped at %d of %d", tc.src, err, i, len(toks))
			}
			got, err := e.Eval(func(r string) (uint64, error) { return vals[r], nil })
			if err != nil || got != tc.want {
				t.Errorf("Eval(%q) = %d, %v, want %d", tc.src, got, err, tc.want)
			}
		})
	}
}

func TestBuiltinsParse(t *testing.T) {
	names := BuiltinNames()
	if len(names) < 10 {
		t.Fatalf("BuiltinNames() = %v, want at least 10 scenarios", names)
	}
	for _, name := range names {
		s, err := ParseFile(Builtin(), name)
		if err != nil {
			t.Errorf("ParseFile(%s) = %v", name, err)
			continue
		}
		if s.Doc == "" {
			t.Errorf("%s: no opening comment saying what it checks", name)
		}
		if strings.HasPrefix(name, "runner/") != (s.WantFail != "") {
			t.Errorf("%s: WantFail = %q: the runner/ scenarios, and only they, must fail", name, s.WantFail)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range BuiltinNames() {
		b, _ := Builtin().(interface{ ReadFile(string) ([]byte, error) }).ReadFile(name)
		f.Add(b)
	}
	f.Add([]byte(header + "0 > P. 1:4(3) ack $x.seq \"abc\" <mss 1,TS val 1 ecr 2>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse("f.pkt", b)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse error %v is not a *SyntaxError", err)
			}
			if lines := strings.Count(string(b), "\n") + 1; se.Line < 1 || se.Line > lines {
				t.Fatalf("error line %d outside 1..%d", se.Line, lines)
			}
			return
		}
		if len(s.Steps) > maxSteps || len(s.Flows) > maxFlows {
			t.Fatalf("%d steps, %d flows: over the caps", len(s.Steps), len(s.Flows))
		}
		for _, st := range s.Steps {
			if st.Packet != nil && (len(st.Packet.Payload) > maxPayloadBytes || optionBytes(st.Packet.Options) > 40) {
				t.Fatalf("line %d: payload %d bytes, options %d bytes: over the caps", st.Line, len(st.Packet.Payload), optionBytes(st.Packet.Options))
			}
			if st.Within > maxWithin || st.Time.At > maxWithin {
				t.Fatalf("line %d: wait over the cap", st.Line)
			}
		}
	})
}
