package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/spoki-telescope/spoki/records"
)

// Event is the part of an event-log line (docs/formats.md#event-log) that
// the lab checks and prints. Unknown fields are
// ignored, so later event types and fields do not break it.
type Event struct {
	// Timestamp is the packet or connection-end time.
	Timestamp records.EventTime `json:"timestamp"`
	// EventType is "syn", "session" or a later issue's type.
	EventType string `json:"event_type"`
	// SrcIP and SrcPort are the scanner's side, DestIP and DestPort the
	// telescope's; Proto is the transport.
	SrcIP    netip.Addr `json:"src_ip"`
	SrcPort  uint16     `json:"src_port"`
	DestIP   netip.Addr `json:"dest_ip"`
	DestPort uint16     `json:"dest_port"`
	Proto    string     `json:"proto"`
	// FlowID and CommunityID join the events of one connection; Host is
	// the sensor that wrote the event.
	FlowID      uint64 `json:"flow_id"`
	CommunityID string `json:"community_id"`
	Host        string `json:"host"`
	// Scanner and Irregular are set on syn events.
	Scanner   string `json:"scanner"`
	Irregular bool   `json:"irregular"`
	// AppProto, Payload (decoded from base64), PayloadPrintable and
	// BytesToServer are set on session events.
	AppProto         string `json:"app_proto"`
	Payload          []byte `json:"payload"`
	PayloadPrintable string `json:"payload_printable"`
	BytesToServer    int64  `json:"bytes_toserver"`
}

// Dest returns the event's destination address and port.
func (e Event) Dest() netip.AddrPort { return netip.AddrPortFrom(e.DestIP, e.DestPort) }

// ReadEvents reads every event-log file of tag in dir
// (TAG.events.YYYYMMDD-HH.jsonl, gzipped or not) and returns the events in
// time order. A line that does not parse is an error: spoki must never
// write half a line, even when stopped.
func ReadEvents(dir, tag string) ([]Event, error) {
	files, err := records.EventLogFiles(dir, tag)
	if err != nil {
		return nil, fmt.Errorf("lab: read events: %w", err)
	}
	var events []Event
	for _, f := range files {
		ev, err := readEventFile(f)
		if err != nil {
			return nil, err
		}
		events = append(events, ev...)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Timestamp.Before(events[j].Timestamp.Time) })
	return events, nil
}

// maxEventLine caps an event-log line; a longer one is an error.
const maxEventLine = 16 << 20

// readEventFile reads one event-log file. A last line without its newline
// is read too (and is an error unless it parses).
func readEventFile(name string) ([]Event, error) {
	var events []Event
	err := records.ReadLogLines(name, records.LineOptions{Max: maxEventLine}, func(line []byte) error {
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab: read events: %w", err)
	}
	return events, nil
}

// WriteEventTable prints one line per event (type, source, destination,
// scanner or app_proto, printable payload cut to width) and the totals: syn
// events by scanner, sessions by app_proto.
func WriteEventTable(w io.Writer, events []Event) {
	const payloadWidth = 40
	fmt.Fprintf(w, "  %-8s %-42s %-30s %-10s %s\n", "TYPE", "SRC", "DEST", "WHAT", "PAYLOAD")
	syns, sessions := map[string]int{}, map[string]int{}
	other := 0
	for _, e := range events {
		what := e.Scanner
		switch e.EventType {
		case "syn":
			syns[e.Scanner]++
		case "session":
			what = e.AppProto
			sessions[e.AppProto]++
		default:
			other++
		}
		p := e.PayloadPrintable
		if p == "" && len(e.Payload) > 0 {
			p = fmt.Sprintf("%q", e.Payload)
		}
		p = strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(p)
		if len(p) > payloadWidth {
			p = p[:payloadWidth-3] + "..."
		}
		src := netip.AddrPortFrom(e.SrcIP, e.SrcPort).String()
		fmt.Fprintf(w, "  %-8s %-42s %-30s %-10s %s\n", e.EventType, src, e.Dest(), what, p)
	}
	fmt.Fprintf(w, "  totals: %d events; syn by scanner: %s; sessions by app_proto: %s",
		len(events), countList(syns), countList(sessions))
	if other > 0 {
		fmt.Fprintf(w, "; %d other", other)
	}
	fmt.Fprintln(w)
}

// countList formats counts as "a=1 b=2", sorted by key.
func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = `""`
		}
		parts[i] = fmt.Sprintf("%s=%d", name, m[k])
	}
	return strings.Join(parts, " ")
}
