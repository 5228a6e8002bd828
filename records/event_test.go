package records

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records/communityid"
)

// merged returns a new map with base's fields and extra's, extra's winning.
func merged(base, extra map[string]any) map[string]any {
	m := maps.Clone(base)
	maps.Copy(m, extra)
	return m
}

// decodeLine checks that line is one JSON object ending in '\n' and decodes it.
func decodeLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line ending in a newline: %q", line)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	return m
}

// checkFields compares the decoded fields of an event with want, numbers
// compared by their text, and reports missing and unexpected keys.
func checkFields(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	norm := func(v any) any {
		b, _ := json.Marshal(v)
		var out any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		_ = dec.Decode(&out)
		return out
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("field %q missing", k)
			continue
		}
		if !reflect.DeepEqual(norm(g), norm(w)) {
			t.Errorf("field %q = %v, want %v", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q = %v", k, got[k])
		}
	}
}

// flowIDs returns the flow_id and community_id fields of a TCP flow.
func flowIDs(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, isn uint32) map[string]any {
	s, d := netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return map[string]any{"flow_id": FlowID(s, d, isn),
		"community_id": communityid.String(CurrentOrigin().CommunityIDSeed, communityid.ProtoTCP, src, dst, sport, dport)}
}

// eventTime is the example timestamp of the brief.
var eventTime = time.Date(2026, 11, 25, 11, 3, 32, 123456789, time.UTC)

func TestAppendSYNEvent(t *testing.T) {
	linux := syn()
	linux.Time, linux.UserID = eventTime.In(time.FixedZone("CET", 3600)), 134219915
	zmap := syn()
	zmap.Time, zmap.IPID, zmap.TTL, zmap.NumOptions, zmap.MSS, zmap.WScale = time.Unix(0, 5).UTC(), 54321, 250, 0, 0, -1
	odd := withOptions(syn(), optNOP, 99, optEOL)
	odd.Time, odd.MSS, odd.WScale, odd.OptionsTruncated, odd.Payload = eventTime, 0, -1, true, []byte{0, 1, 2}
	odd.Src, odd.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	frag := syn()
	frag.Time, frag.Fragment = eventTime, true

	flow := map[string]any{"event_type": "syn", "proto": "TCP", "src_ip": "198.51.100.7", "src_port": 40000,
		"dest_ip": "192.0.2.10", "dest_port": 80}
	with := func(extra map[string]any) map[string]any { return merged(flow, extra) }
	tests := []struct {
		name string
		p    Packet
		want map[string]any
	}{
		{"linux SYN, time converted to UTC", linux, with(map[string]any{
			"timestamp": "2026-11-25T11:03:32.123456+0000", "userid": 134219915,
			"tcp": map[string]any{"seq": 123456789, "window": 64240, "ttl": 52, "ipid": 4242,
				"options": []any{"mss", "sack_perm", "timestamp", "nop", "wscale"}, "mss": 1460, "wscale": 7},
			"irregular": false, "irregular_reasons": []any{}, "scanner": "unknown"})},
		{"zmap, fixed 6-digit fraction", zmap, with(map[string]any{
			"timestamp": "1970-01-01T00:00:00.000000+0000", "userid": 0,
			"tcp":       map[string]any{"seq": 123456789, "window": 64240, "ttl": 250, "ipid": 54321, "options": []any{}},
			"irregular": true, "irregular_reasons": []any{"ipid_54321", "ttl_gt_200", "no_tcp_options"}, "scanner": "zmap"})},
		{"IPv6, unknown kind, truncated, payload", odd, with(map[string]any{
			"timestamp": "2026-11-25T11:03:32.123456+0000", "userid": 0, "src_ip": "2001:db8::1", "dest_ip": "2001:db8::2",
			"tcp": map[string]any{"seq": 123456789, "window": 64240, "ttl": 52, "ipid": 4242,
				"options": []any{"nop", "opt_99", "eol"}, "options_truncated": true},
			"payload":   "AAEC",
			"irregular": false, "irregular_reasons": []any{}, "scanner": "unknown"})},
		{"first fragment", frag, with(map[string]any{
			"timestamp": "2026-11-25T11:03:32.123456+0000", "userid": 0, "fragment": true,
			"tcp": map[string]any{"seq": 123456789, "window": 64240, "ttl": 52, "ipid": 4242,
				"options": []any{"mss", "sack_perm", "timestamp", "nop", "wscale"}, "mss": 1460, "wscale": 7},
			"irregular": false, "irregular_reasons": []any{}, "scanner": "unknown"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want = merged(tc.want, flowIDs(tc.p.Src, tc.p.SrcPort, tc.p.Dst, tc.p.DstPort, tc.p.Seq))
			line := AppendSYNEvent([]byte("prefix"), &tc.p)
			if !bytes.HasPrefix(line, []byte("prefix{")) {
				t.Fatalf("AppendSYNEvent did not append: %q", line)
			}
			checkFields(t, decodeLine(t, line[len("prefix"):]), tc.want)
		})
	}
}

// httpDetail stands in for a handler's parsed record.
type httpDetail struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
}

// badDetail fails to encode.
type badDetail struct{}

func (badDetail) MarshalJSON() ([]byte, error) { return nil, errors.New("boom") }

func TestAppendSessionEvent(t *testing.T) {
	flow := Flow{
		Remote:   netip.MustParseAddrPort("198.51.100.7:40000"),
		Local:    netip.MustParseAddrPort("192.0.2.10:80"),
		UserID:   7,
		ISN:      99,
		Accepted: eventTime,
	}
	payload := []byte("GET /x HTTP/1.1\r\nUser-Agent: \"q\\\x00\xff\r\n")
	head := map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000", "event_type": "session",
		"src_ip": "198.51.100.7", "src_port": 40000, "dest_ip": "192.0.2.10", "dest_port": 80, "proto": "TCP", "userid": 7}
	head = merged(head, flowIDs(flow.Remote.Addr(), flow.Remote.Port(), flow.Local.Addr(), flow.Local.Port(), flow.ISN))
	with := func(extra map[string]any) map[string]any { return merged(head, extra) }
	tests := []struct {
		name    string
		s       Session
		want    map[string]any
		wantErr bool
	}{
		{"http with detail", Session{Flow: flow, End: eventTime.Add(1500*time.Millisecond + 250*time.Microsecond),
			AppProto: "http", Payload: payload, BytesToServer: 40, BytesToClient: 300,
			Detail: httpDetail{Method: "GET", URI: "/x"}},
			with(map[string]any{"end": "2026-11-25T11:03:33.623706+0000", "app_proto": "http",
				"payload": base64.StdEncoding.EncodeToString(payload), "payload_printable": "GET /x HTTP/1.1..User-Agent: \"q\\....",
				"bytes_toserver": 40, "bytes_toclient": 300, "duration_ms": json.Number("1500.250"),
				"http": map[string]any{"method": "GET", "uri": "/x"}}), false},
		{"silent client, error, no detail", Session{Flow: flow, End: eventTime.Add(5 * time.Second),
			AppProto: "generic", Error: "read deadline \"5s\"\n"},
			with(map[string]any{"end": "2026-11-25T11:03:37.123456+0000", "app_proto": "generic",
				"payload": "", "payload_printable": "", "bytes_toserver": 0, "bytes_toclient": 0, "duration_ms": json.Number("5000.000"),
				"error": "read deadline \"5s\"\n"}), false},
		{"reserved app_proto key becomes detail", Session{Flow: flow, End: eventTime, AppProto: "payload",
			Detail: map[string]int{"a": 1}},
			with(map[string]any{"end": "2026-11-25T11:03:32.123456+0000", "app_proto": "payload",
				"payload": "", "payload_printable": "", "bytes_toserver": 0, "bytes_toclient": 0, "duration_ms": json.Number("0.000"),
				"detail": map[string]any{"a": 1}}), false},
		{"detail that fails to encode", Session{Flow: flow, End: eventTime, AppProto: "tls", Detail: badDetail{}},
			with(map[string]any{"end": "2026-11-25T11:03:32.123456+0000", "app_proto": "tls",
				"payload": "", "payload_printable": "", "bytes_toserver": 0, "bytes_toclient": 0, "duration_ms": json.Number("0.000"),
				"detail_error": "records: session event tls detail: json: error calling MarshalJSON for type records.badDetail: boom"}), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line, err := AppendSessionEvent(nil, &tc.s)
			if (err != nil) != tc.wantErr {
				t.Fatalf("AppendSessionEvent() error = %v, want error %v", err, tc.wantErr)
			}
			checkFields(t, decodeLine(t, line), tc.want)
		})
	}
}

func TestAppendEvent(t *testing.T) {
	flow := &Flow{Remote: netip.MustParseAddrPort("[2001:db8::1]:1"), Local: netip.MustParseAddrPort("[2001:db8::2]:23"), UserID: 3}
	type twoPhase struct {
		First  string `json:"first_phase"`
		Events int    `json:"events"`
	}
	tests := []struct {
		name    string
		flow    *Flow
		fields  any
		want    map[string]any
		wantErr bool
	}{
		{"with flow", flow, twoPhase{"isyn", 2}, map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000",
			"event_type": "two_phase", "src_ip": "2001:db8::1", "src_port": 1, "dest_ip": "2001:db8::2", "dest_port": 23,
			"proto": "TCP", "userid": 3, "first_phase": "isyn", "events": 2,
			"flow_id": FlowID(flow.Remote, flow.Local, 0), "community_id": communityid.String(0, 6, flow.Remote.Addr(), flow.Local.Addr(), 1, 23)}, false},
		{"no flow", nil, map[string]any{"packets": 10}, map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000",
			"event_type": "two_phase", "packets": 10}, false},
		{"nil fields", nil, nil, map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000", "event_type": "two_phase"}, false},
		{"empty object", nil, struct{}{}, map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000", "event_type": "two_phase"}, false},
		{"not an object", flow, []int{1}, nil, true},
		{"unencodable", flow, badDetail{}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line, err := AppendEvent([]byte("x"), "two_phase", eventTime, tc.flow, tc.fields)
			if tc.wantErr {
				if err == nil || string(line) != "x" {
					t.Fatalf("AppendEvent() = %q, %v, want dst unchanged and an error", line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AppendEvent() error %v", err)
			}
			checkFields(t, decodeLine(t, line[1:]), tc.want)
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "http", `"http"`},
		{"escapes", "a\"b\\c\n\r\t\x01", `"a\"b\\c\n\r\t\u0001"`},
		{"utf-8 kept", "größe", `"größe"`},
		{"invalid utf-8", "a\xffb", `"a\ufffdb"`},
		{"line separators", "\u2028\u2029", `"\u2028\u2029"`},
		{"html not escaped", "<&>", `"<&>"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendJSONString(nil, tc.in))
			if got != tc.want {
				t.Errorf("appendJSONString(%q) = %s, want %s", tc.in, got, tc.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			if want := strings.ToValidUTF8(tc.in, "\ufffd"); back != want {
				t.Errorf("decoded %q, want %q", back, want)
			}
		})
	}
}

// FuzzEvents checks that the event encoders always produce one valid JSON
// line, whatever the payload, handler name, error text and option kinds.
func FuzzEvents(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"), "http", "", []byte{2, 4, 8, 1, 3}, uint16(54321), int64(1e9))
	f.Add([]byte{0, 0xff, '"', '\\'}, "te\"l\x00net", "dead\u2028line\xff", []byte{}, uint16(0), int64(-1))
	f.Fuzz(func(t *testing.T, payload []byte, appProto, errText string, opts []byte, ipid uint16, nanos int64) {
		p := syn()
		p.Time, p.IPID, p.Payload = time.Unix(0, nanos), ipid, payload
		p.NumOptions = uint8(copy(p.Options[:], opts))
		p.OptionsTruncated = len(opts) > MaxOptions
		line := AppendSYNEvent(nil, &p)
		if !json.Valid(line) || bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("AppendSYNEvent: not one JSON line: %q", line)
		}
		s := Session{Flow: Flow{Remote: netip.AddrPortFrom(p.Src, 1), Local: netip.AddrPortFrom(p.Dst, 2), Accepted: p.Time},
			End: time.Unix(0, nanos/2), AppProto: appProto, Payload: payload, Error: errText,
			Detail: map[string]string{errText: string(payload)}}
		line, err := AppendSessionEvent(nil, &s)
		if err != nil {
			t.Fatalf("AppendSessionEvent: %v", err)
		}
		if !json.Valid(line) || bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("AppendSessionEvent: not one JSON line: %q", line)
		}
	})
}
