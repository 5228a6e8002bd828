package records

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records/communityid"
)

// TestFlowIDJoinsSYNAndSession checks that the syn event of a SYN and the
// session event of the connection it opened (the Flow the netstack makes
// from the handshake ACK: ISN = ACK seq - 1) carry the same flow_id and
// community_id, and that another connection of the same tuple (another
// ISN) gets another flow_id but the same community_id.
func TestFlowIDJoinsSYNAndSession(t *testing.T) {
	p := syn()
	p.Time = eventTime
	ackSeq := p.Seq + 1
	s := Session{Flow: Flow{Remote: netip.AddrPortFrom(p.Src, p.SrcPort), Local: netip.AddrPortFrom(p.Dst, p.DstPort),
		ISN: ackSeq - 1, Accepted: eventTime}, End: eventTime, AppProto: "http"}
	synEv := decodeLine(t, AppendSYNEvent(nil, &p))
	line, err := AppendSessionEvent(nil, &s)
	if err != nil {
		t.Fatal(err)
	}
	sessEv := decodeLine(t, line)
	if synEv["flow_id"] == nil || synEv["flow_id"] != sessEv["flow_id"] || synEv["community_id"] != sessEv["community_id"] {
		t.Fatalf("syn %v/%v, session %v/%v: want one flow_id and community_id", synEv["flow_id"], synEv["community_id"],
			sessEv["flow_id"], sessEv["community_id"])
	}
	other := p
	other.Seq++
	o := decodeLine(t, AppendSYNEvent(nil, &other))
	if o["flow_id"] == synEv["flow_id"] || o["community_id"] != synEv["community_id"] {
		t.Errorf("another ISN: flow_id %v (was %v), community_id %v (was %v)", o["flow_id"], synEv["flow_id"], o["community_id"], synEv["community_id"])
	}
	n, err := synEv["flow_id"].(json.Number).Int64()
	if err != nil || n <= 0 || n >= 1<<51 {
		t.Errorf("flow_id %v: want a positive integer under 2^51", synEv["flow_id"])
	}
	// Over many tuples the ids stay under 2^51 and do not collide.
	seen := map[uint64]bool{}
	for i := range 100000 {
		id := FlowID(netip.AddrPortFrom(p.Src, uint16(i)), netip.AddrPortFrom(p.Dst, 80), uint32(i*7919))
		if id >= 1<<51 || seen[id] {
			t.Fatalf("flow id %d of tuple %d out of range or repeated", id, i)
		}
		seen[id] = true
	}
}

// TestOrigin checks the host field on events with and without a flow, and
// that the seed reaches the community_id.
func TestOrigin(t *testing.T) {
	defer SetOrigin(CurrentOrigin())
	p := syn()
	p.Time = eventTime
	before := decodeLine(t, AppendSYNEvent(nil, &p))
	SetOrigin(Origin{Host: `vp-"ams"`, CommunityIDSeed: 7})
	after := decodeLine(t, AppendSYNEvent(nil, &p))
	if after["host"] != `vp-"ams"` {
		t.Errorf("syn host = %v", after["host"])
	}
	want := communityid.String(7, communityid.ProtoTCP, p.Src, p.Dst, p.SrcPort, p.DstPort)
	if after["community_id"] != want || after["community_id"] == before["community_id"] {
		t.Errorf("community_id with seed 7 = %v, want %s (seed 0: %v)", after["community_id"], want, before["community_id"])
	}
	if after["flow_id"] != before["flow_id"] {
		t.Error("the seed changed the flow_id")
	}
	line, err := AppendEvent(nil, "stats", eventTime, nil, map[string]int{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	if m := decodeLine(t, line); m["host"] != `vp-"ams"` || m["flow_id"] != nil {
		t.Errorf("stats event %v: want host and no flow", m)
	}
	SetOrigin(Origin{})
	if m := decodeLine(t, AppendSYNEvent(nil, &p)); m["host"] != nil {
		t.Errorf("no host set, got %v", m["host"])
	}
}

func TestAppendAlertEvent(t *testing.T) {
	flow := &Flow{Remote: netip.MustParseAddrPort("198.51.100.7:40000"), Local: netip.MustParseAddrPort("192.0.2.10:23"), UserID: 3, ISN: 5}
	line, err := AppendAlertEvent(nil, eventTime, flow, &AlertDownloader, "telnet", "downloader",
		map[string]string{"url": "http://203.0.113.5/x.sh"})
	if err != nil {
		t.Fatal(err)
	}
	want := merged(map[string]any{"timestamp": "2026-11-25T11:03:32.123456+0000", "event_type": "alert",
		"src_ip": "198.51.100.7", "src_port": 40000, "dest_ip": "192.0.2.10", "dest_port": 23, "proto": "TCP", "userid": 3,
		"alert": map[string]any{"action": "allowed", "gid": 1, "signature_id": 9000002, "rev": 1,
			"signature": "SPOKI DOWNLOADER COMMAND", "category": "A Network Trojan was detected", "severity": 1},
		"app_proto": "telnet", "downloader": map[string]any{"url": "http://203.0.113.5/x.sh"}},
		flowIDs(flow.Remote.Addr(), 40000, flow.Local.Addr(), 23, 5))
	checkFields(t, decodeLine(t, line), want)
	for _, bad := range []struct {
		source string
		fields any
	}{{"downloader", []int{1}}, {"src_ip", map[string]int{}}, {"x", badDetail{}}} {
		if got, err := AppendAlertEvent([]byte("x"), eventTime, flow, &AlertTwoPhase, "", bad.source, bad.fields); err == nil || string(got) != "x" {
			t.Errorf("AppendAlertEvent(%q, %v) = %q, %v: want dst unchanged and an error", bad.source, bad.fields, got, err)
		}
	}
}

func TestEventTime(t *testing.T) {
	tm := time.Date(2026, 12, 1, 21, 51, 5, 123456789, time.FixedZone("CET", 3600))
	b, err := json.Marshal(struct {
		T EventTime `json:"t"`
	}{EventTime{tm}})
	if err != nil || string(b) != `{"t":"2026-12-01T20:51:05.123456+0000"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	for _, in := range []string{`"2026-12-01T20:51:05.123456+0000"`, `"2026-12-01T20:51:05.123456Z"`, `"2026-12-01T21:51:05.123456+01:00"`} {
		var et EventTime
		if err := json.Unmarshal([]byte(in), &et); err != nil || !et.Equal(tm.Truncate(time.Microsecond)) {
			t.Errorf("Unmarshal(%s) = %v, %v", in, et, err)
		}
	}
	var et EventTime
	if err := json.Unmarshal([]byte(`"yesterday"`), &et); err == nil {
		t.Error("Unmarshal accepted a non-time")
	}
	// Filebeat's Suricata module parses the timestamp with this Go layout.
	if _, err := time.Parse("2006-01-02T15:04:05.999999999Z0700", strings.Trim(string(b[5:len(b)-1]), `"`)); err != nil {
		t.Errorf("Filebeat's layout: %v", err)
	}
}
