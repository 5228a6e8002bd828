package records

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

type ipEvent struct {
	EventType string `json:"event_type"`
	Proto     string `json:"proto"`
	Payload   string `json:"payload"`
	UserID    int    `json:"userid"`
	Probed    bool   `json:"probed"`
	ICMP      struct {
		Type, Code int
		ID, Seq    *int
	} `json:"icmp"`
	Service string           `json:"service"`
	DNS     struct{ ID int } `json:"dns"`
}

// TestICMPAndUDPEvents: the icmp and udp events are valid JSON lines with
// the flow, the reaction and, for echo requests, id and seq; a udp event
// carries the service members it is given.
func TestICMPAndUDPEvents(t *testing.T) {
	at := time.Date(2026, 12, 1, 22, 0, 0, 5, time.UTC)
	echo := Packet{Time: at, Proto: ProtoICMP, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8:5b0::1"),
		TTL: 64, ICMPType: 128, ICMPRest: 0x12340002, Payload: []byte("abc"), PayloadLen: 3, Probed: true, UserID: 9, Method: MethodICMPEchoReply}
	var e ipEvent
	line := AppendICMPEvent(nil, &echo)
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if e.EventType != EventICMP || e.Proto != "IPv6-ICMP" || e.ICMP.Type != 128 || e.ICMP.ID == nil || *e.ICMP.ID != 0x1234 || *e.ICMP.Seq != 2 ||
		!e.Probed || e.UserID != 9 || e.Payload != "YWJj" || line[len(line)-1] != '\n' {
		t.Errorf("icmp event %s", line)
	}
	unreach := Packet{Time: at, Proto: ProtoICMP, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), ICMPType: 3, ICMPCode: 1}
	e = ipEvent{}
	if line := AppendICMPEvent(nil, &unreach); json.Unmarshal(line, &e) != nil || e.Proto != "ICMP" || e.ICMP.Code != 1 || e.ICMP.ID != nil {
		t.Errorf("icmp event of an unreachable %s", line)
	}
	udp := Packet{Time: at, Proto: ProtoUDP, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.1"), SrcPort: 5000, DstPort: 53}
	line = AppendUDPEvent(nil, &udp, []byte(`"service":"dns","dns":{"id":7}`))
	e = ipEvent{}
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if e.EventType != EventUDP || e.Proto != "UDP" || e.Service != "dns" || e.DNS.ID != 7 || e.Probed {
		t.Errorf("udp event %s", line)
	}
	if line := AppendUDPEvent(nil, &udp, nil); !json.Valid(line) {
		t.Errorf("udp event without fields %s", line)
	}
}
