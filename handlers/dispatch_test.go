package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
)

func TestLookupAddr(t *testing.T) {
	r := handlers.NewRegistry(nop("generic"))
	r.Register(nop("tls"), handlers.Matcher{Content: handlers.Prefix("\x16\x03"), Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}})
	r.Register(nop("telnet"), handlers.Matcher{Ports: []uint16{23}, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}})
	r.Register(nop("telnet-b"), handlers.Matcher{Ports: []uint16{23}, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/25")}})
	r.Register(nop("ssh"), handlers.Matcher{Ports: []uint16{22}})
	r.PureFor(netip.MustParsePrefix("203.0.113.0/24"))
	tests := []struct {
		name  string
		first string
		local string
		want  string
	}{
		{"content in its prefix", "\x16\x03\x01", "198.51.100.1:443", "tls"},
		{"content outside its prefix", "\x16\x03\x01", "198.51.100.200:443", "generic"},
		{"port per prefix a", "", "198.51.100.7:23", "telnet"},
		{"port per prefix b", "", "198.51.100.130:23", "telnet-b"},
		{"port of no prefix", "", "192.0.2.1:23", "generic"},
		{"port for all", "", "192.0.2.1:22", "ssh"},
		{"v4-mapped address", "", "[::ffff:198.51.100.7]:23", "telnet"},
		{"pure prefix beats content", "\x16\x03\x01", "203.0.113.5:443", "generic"},
		{"pure prefix beats port", "", "203.0.113.5:22", "generic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first []byte
			if tc.first != "" {
				first = []byte(tc.first)
			}
			if got := r.LookupAddr(first, netip.MustParseAddrPort(tc.local)).Name(); got != tc.want {
				t.Errorf("LookupAddr(%q, %s) = %s, want %s", tc.first, tc.local, got, tc.want)
			}
		})
	}
	r.PureAll()
	if got := r.LookupAddr(nil, netip.MustParseAddrPort("192.0.2.1:22")).Name(); got != "generic" {
		t.Errorf("after PureAll, LookupAddr = %s, want generic", got)
	}
}

func TestRegisterPrefixPanics(t *testing.T) {
	tests := []struct {
		name string
		m    handlers.Matcher
		want string
	}{
		{"overlapping prefix on a taken port", handlers.Matcher{Ports: []uint16{23}, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "port 23 already served"},
		{"all addresses on a taken port", handlers.Matcher{Ports: []uint16{23}}, "port 23 already served"},
		{"invalid prefix", handlers.Matcher{Prefixes: []netip.Prefix{{}}}, "invalid prefix"},
		{"negative wait", handlers.Matcher{SpeakFirst: -time.Second}, "negative SpeakFirst"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := handlers.NewRegistry(nop("generic"))
			r.Register(nop("a"), handlers.Matcher{Ports: []uint16{23}, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
			defer func() {
				if v := recover(); v == nil || !strings.Contains(v.(string), tc.want) {
					t.Errorf("Register panic = %v, want %q", v, tc.want)
				}
			}()
			r.Register(nop("b"), tc.m)
		})
	}
}

// TestMuxSpeakFirst: a speak-first port's handler gets the connection
// after its own short wait with a nil First, while content arriving in
// time still picks the content handler, and pure mode waits the full
// first-data timeout for the fallback.
func TestMuxSpeakFirst(t *testing.T) {
	ch := make(chan seen, 4)
	r := handlers.NewRegistry(probe("generic", ch))
	r.Register(probe("tls", ch), handlers.Matcher{Content: handlers.Prefix("\x16\x03")})
	r.Register(probe("telnet", ch), handlers.Matcher{Ports: []uint16{23}, SpeakFirst: 100 * time.Millisecond})
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: r, FirstDataTimeout: 2 * time.Second})

	start := time.Now()
	dial(t, m, 23)
	got := <-ch
	if wait := time.Since(start); got.first != nil || wait > time.Second {
		t.Errorf("silent client on 23: First %q after %v, want nil after ~100ms", got.first, wait)
	}
	rec.Wait(t, 1) // sessions in dial order
	c := dial(t, m, 23)
	c.Write([]byte("\x16\x03\x01\x00"))
	<-ch
	ss := rec.Wait(t, 2)
	if ss[0].AppProto != "telnet" || ss[1].AppProto != "tls" {
		t.Errorf("app_protos %s, %s; want telnet, tls", ss[0].AppProto, ss[1].AppProto)
	}
	if n := m.Stats().Snapshot().FirstDataTimeouts; n != 1 {
		t.Errorf("FirstDataTimeouts = %d, want 1", n)
	}
}

// TestConnEmit: events raised by a handler reach EmitEvent as encoded
// lines with the flow, up to the per-connection cap; the rest are counted.
func TestConnEmit(t *testing.T) {
	var ev eventLines
	emitEvent := ev.emit(t)
	errs := make(chan error, 4)
	h := handlers.Func("bot", func(_ context.Context, c *handlers.Conn) (any, error) {
		for i := range 3 {
			errs <- c.Emit(handlers.EventDownloader, handlers.Downloader{AppProto: "bot", Tool: "wget", URL: "http://192.0.2.1/" + string(rune('a'+i)), Port: 80})
		}
		errs <- c.Emit("bad", 42) // not an object
		return nil, nil
	})
	r := handlers.NewRegistry(h)
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: r, EmitEvent: emitEvent, MaxEventsPerConn: 2, FirstDataTimeout: 50 * time.Millisecond})
	dial(t, m, 9)
	rec.Wait(t, 1)
	for i, want := range []error{nil, nil, handlers.ErrEventDropped, handlers.ErrEventDropped} {
		if err := <-errs; !errors.Is(err, want) {
			t.Errorf("Emit #%d = %v, want %v", i, err, want)
		}
	}
	lines := ev.get()
	if len(lines) != 2 || lines[0]["event_type"] != "downloader" || lines[0]["url"] != "http://192.0.2.1/a" ||
		lines[0]["dest_port"] != float64(9) || lines[0]["tool"] != "wget" {
		t.Errorf("lines = %v", lines)
	}
	if st := m.Stats().Snapshot(); st.Events != 2 || st.EventsDropped != 2 {
		t.Errorf("Events, EventsDropped = %d, %d; want 2, 2", st.Events, st.EventsDropped)
	}

	// A Conn from NewConn, or a Mux without EmitEvent, drops.
	server, _ := handlerstest.TCPPair(t)
	if err := handlers.NewConn(server, handlerstest.Flow(server, 1), nil).Emit("x", nil); !errors.Is(err, handlers.ErrEventDropped) {
		t.Errorf("NewConn Emit = %v, want ErrEventDropped", err)
	}
}

// TestConnEmitAlert: with MuxConfig.Alerts each downloader event is
// followed by an alert event of the same flow (flow_id, community_id) in
// EVE's alert form, carrying the downloader's fields; other event types
// raise none, and alerts do not use up MaxEventsPerConn.
func TestConnEmitAlert(t *testing.T) {
	for _, alerts := range []bool{true, false} {
		var ev eventLines
		emitEvent := ev.emit(t)
		h := handlers.Func("bot", func(_ context.Context, c *handlers.Conn) (any, error) {
			_ = c.Emit(handlers.EventDownloader, handlers.Downloader{AppProto: "bot", Tool: "wget", URL: "http://192.0.2.1/a", Port: 80})
			_ = c.Emit("note", map[string]int{"n": 1})
			return nil, nil
		})
		m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: handlers.NewRegistry(h), EmitEvent: emitEvent, Alerts: alerts,
			MaxEventsPerConn: 2, FirstDataTimeout: 50 * time.Millisecond})
		dial(t, m, 9)
		rec.Wait(t, 1)
		lines := ev.get()
		types := []string{}
		for _, l := range lines {
			types = append(types, l["event_type"].(string))
		}
		want := "downloader,note"
		if alerts {
			want = "downloader,alert,note"
		}
		if strings.Join(types, ",") != want {
			t.Errorf("alerts %v: events %v, want %s", alerts, types, want)
		} else if alerts {
			a, d := lines[1], lines[0]
			al, _ := a["alert"].(map[string]any)
			dl, _ := a["downloader"].(map[string]any)
			if al == nil || al["signature_id"] != float64(9000002) || al["signature"] != "SPOKI DOWNLOADER COMMAND" ||
				dl == nil || dl["url"] != "http://192.0.2.1/a" || a["app_proto"] != "bot" ||
				a["flow_id"] != d["flow_id"] || a["community_id"] != d["community_id"] || a["flow_id"] == nil {
				t.Errorf("alert %v after downloader %v", a, d)
			}
			if n := m.Stats().Snapshot().Alerts; n != 1 {
				t.Errorf("Alerts = %d, want 1", n)
			}
		}
	}
}

// eventLines collects the event lines a Mux emits (MuxConfig.EmitEvent),
// decoded, from the connections' goroutines.
type eventLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

// emit returns the EmitEvent function that fills l.
func (l *eventLines) emit(t *testing.T) func(time.Time, []byte) {
	return func(_ time.Time, line []byte) {
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Errorf("line %q: %v", line, err)
		}
		l.mu.Lock()
		l.lines = append(l.lines, v)
		l.mu.Unlock()
	}
}

// get returns a copy of the lines so far.
func (l *eventLines) get() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}
