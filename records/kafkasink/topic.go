package kafkasink

import (
	"bytes"
	"net/netip"
)

// maxTopicBytes is Kafka's limit on topic names.
const maxTopicBytes = 249

// legalTopicByte reports whether Kafka allows c in a topic name.
func legalTopicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// legalTopicPart reports whether s may be part of a topic name; a name
// built from it may still be too long, which the brokers report.
func legalTopicPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if !legalTopicByte(s[i]) {
			return false
		}
	}
	return len(s) <= maxTopicBytes
}

// ValidTopic reports whether Kafka accepts name as a whole topic name:
// 1 to 249 bytes of ASCII letters, digits, '.', '_' and '-', other than
// "." and "..".
func ValidTopic(name string) bool {
	return name != "" && name != "." && name != ".." && legalTopicPart(name)
}

// sanitize replaces the bytes Kafka does not allow in a topic name by '_'.
// Only event types can hold them (New checks prefix and tag), and those are
// constants of spoki's code, so this is a safety net, not a feature.
func sanitize(name string) string {
	if legalTopicPart(name) {
		return name
	}
	b := []byte(name)
	for i, c := range b {
		if !legalTopicByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

// The fixed head of every event line (records.appendEventHead):
// {"timestamp":"…","event_type":"TYPE" and, for events with a flow,
// ,"src_ip":"ADDR".
var (
	headEventType = []byte(`","event_type":"`)
	headSrcIP     = []byte(`,"src_ip":"`)
)

// maxHeadOffset bounds the search for event_type: it follows the 30-byte
// timestamp, so a line without it near the start is not an event line.
const maxHeadOffset = 64

// parseHead returns the event type and the source address of an event
// line; src is invalid for events without a flow. ok is false when the line
// does not start as records writes event lines.
func parseHead(line []byte) (eventType string, src netip.Addr, ok bool) {
	head := line[:min(len(line), maxHeadOffset)]
	i := bytes.Index(head, headEventType)
	if i < 0 {
		return "", netip.Addr{}, false
	}
	rest := line[i+len(headEventType):]
	j := bytes.IndexByte(rest, '"')
	// A backslash would mean an escaped event type, which records never
	// writes; refusing it keeps the topic name honest.
	if j <= 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", netip.Addr{}, false
	}
	eventType, rest = string(rest[:j]), rest[j+1:]
	if !bytes.HasPrefix(rest, headSrcIP) {
		return eventType, netip.Addr{}, true
	}
	rest = rest[len(headSrcIP):]
	if j = bytes.IndexByte(rest, '"'); j < 0 {
		return "", netip.Addr{}, false
	}
	src, err := netip.ParseAddr(string(rest[:j]))
	if err != nil {
		return "", netip.Addr{}, false
	}
	return eventType, src, true
}
