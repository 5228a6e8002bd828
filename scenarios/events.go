package scenarios

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// LogDir is an EventSource that reads the telescope's event log files,
// TAG.events.YYYYMMDD-HH.jsonl (and their rotated .gz), from Dir.
type LogDir struct {
	Dir, Tag string
}

var _ EventSource = LogDir{}

// Events implements EventSource. A last line without its newline (being
// written) is skipped; any other line that does not parse is an error.
func (l LogDir) Events(since time.Time) ([]Event, error) {
	files, err := records.EventLogFiles(l.Dir, l.Tag)
	if err != nil {
		return nil, fmt.Errorf("scenarios: events: %w", err)
	}
	sort.Strings(files)
	var out []Event
	for _, name := range files {
		ev, err := readEventFile(name, since)
		if err != nil {
			return nil, err
		}
		out = append(out, ev...)
	}
	return out, nil
}

// readEventFile reads one event file, keeping events from since on. A
// partial last line is still being written: it is left for the next read.
func readEventFile(name string, since time.Time) ([]Event, error) {
	var out []Event
	err := records.ReadLogLines(name, records.LineOptions{DropPartial: true}, func(line []byte) error {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var e Event
		if err := dec.Decode(&e); err != nil {
			return err
		}
		if ts, ok := e["timestamp"].(string); ok {
			if t, err := records.ParseTimestamp(ts); err == nil && t.Before(since.Truncate(time.Microsecond)) {
				return nil
			}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scenarios: events: %w", err)
	}
	return out, nil
}

// value returns the field at a dotted path, decoding a base64 field named
// payload.
func (e Event) value(key string) (any, bool) {
	var cur any = map[string]any(e)
	parts := strings.Split(key, ".")
	for _, p := range parts {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	if parts[len(parts)-1] == "payload" {
		if s, ok := cur.(string); ok {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				return string(b), true
			}
		}
	}
	return cur, true
}

// render formats a JSON value for comparison: strings as they are, numbers
// as written, arrays as their elements joined with commas.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, el := range x {
			parts[i] = render(el)
		}
		return strings.Join(parts, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// holds reports whether c holds for e, and what the field was.
func (c Cond) holds(e Event) (bool, string) {
	v, ok := e.value(c.Key)
	if !ok {
		return c.Op == OpNe, "missing"
	}
	got := render(v)
	switch c.Op {
	case OpEq:
		return got == c.Value, got
	case OpNe:
		return got != c.Value, got
	case OpContains:
		if arr, ok := v.([]any); ok {
			for _, el := range arr {
				if render(el) == c.Value {
					return true, got
				}
			}
			return false, got
		}
		return strings.Contains(got, c.Value), got
	}
	return false, got
}

// String formats the condition as written.
func (c Cond) String() string {
	v := c.Value
	if strings.ContainsAny(v, " \t\"\\") || v == "" {
		v = strconv.Quote(v)
	}
	return c.Key + c.Op.String() + v
}

// ofFlow reports whether e is about the flow from src to dst.
func ofFlow(e Event, src, dst netip.AddrPort) bool {
	addr := func(k string) netip.Addr {
		s, _ := e[k].(string)
		a, _ := netip.ParseAddr(s)
		return a.Unmap()
	}
	port := func(k string) uint16 {
		n, _ := e[k].(json.Number)
		v, _ := strconv.ParseUint(n.String(), 10, 16)
		return uint16(v)
	}
	return addr("src_ip") == src.Addr() && port("src_port") == src.Port() &&
		addr("dest_ip") == dst.Addr() && port("dest_port") == dst.Port()
}

// expectEvent polls the event source until an event of the step's type on
// the step's flow satisfies every condition, or the window ends.
func (ru *run) expectEvent(ctx context.Context, fs *flowState, st *Step) (string, time.Time, error) {
	within := st.window(DefaultEventWithin)
	if ru.r.cfg.Events == nil {
		return "", time.Now(), fmt.Errorf("no event log to read (give the telescope's --log-dir)")
	}
	deadline := time.Now().Add(within)
	// Events of earlier runs on the same ports are not this run's: the
	// telescope stamps packet times, which are after the script's start.
	since := ru.start.Add(-100 * time.Millisecond)
	var lastSeen []string
	for {
		events, err := ru.r.cfg.Events.Events(since)
		if err != nil {
			return "", time.Now(), err
		}
		lastSeen = lastSeen[:0]
		for _, e := range events {
			if e["event_type"] != st.Event.Type || !ofFlow(e, fs.src, fs.dst) {
				continue
			}
			ok := true
			var got []string
			for _, c := range st.Event.Conds {
				h, v := c.holds(e)
				if !h {
					ok = false
					got = append(got, c.Key+"="+strconv.Quote(v))
				}
			}
			if ok {
				return fmt.Sprintf("%s event at %v", st.Event.Type, e["timestamp"]), time.Now(), nil
			}
			lastSeen = append(lastSeen, strings.Join(got, " "))
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", time.Now(), ctx.Err()
		case <-time.After(eventPoll):
		}
	}
	conds := make([]string, len(st.Event.Conds))
	for i, c := range st.Event.Conds {
		conds[i] = c.String()
	}
	msg := fmt.Sprintf("no %s event for %s > %s", st.Event.Type, fs.src, fs.dst)
	if len(conds) > 0 {
		msg += " with " + strings.Join(conds, " ")
	}
	msg += fmt.Sprintf(" within %v", within)
	if len(lastSeen) > 0 {
		if len(lastSeen) > 3 {
			lastSeen = append(lastSeen[:3], fmt.Sprintf("and %d more", len(lastSeen)-3))
		}
		msg += fmt.Sprintf("; the flow's %s events have %s", st.Event.Type, strings.Join(lastSeen, "; "))
	} else {
		msg += fmt.Sprintf("; the flow has no %s event at all", st.Event.Type)
	}
	return "", time.Now(), fmt.Errorf("%s", msg)
}
