package test

// The event log must drop into pipelines built for Suricata's EVE JSON
// unchanged. Filebeat's Suricata module decodes each line under
// suricata.eve and indexes it with a fixed mapping for Suricata's fields
// and Elasticsearch's dynamic mapping for the rest; a document whose value
// contradicts the mapping (an object where a concrete value is mapped, a
// string where a number is) is rejected. This file reproduces the part of
// that mapping spoki's events touch and loads a representative event of
// each type, made by the real encoders, through it.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/handlers"
	spokihttp "github.com/spoki-telescope/spoki/handlers/http"
	"github.com/spoki-telescope/spoki/handlers/ssh"
	spokitls "github.com/spoki-telescope/spoki/handlers/tls"
	"github.com/spoki-telescope/spoki/records"
)

// e2eEVEMapping is the Filebeat Suricata module's mapping of the fields
// spoki writes or could collide with (x-pack/filebeat/module/suricata
// eve/_meta/fields.yml and the Elastic integration's suricata.eve fields):
// "object" for groups, else the field's type. flow_id is mapped as long
// here (the module maps it as keyword, which a JSON integer also fits),
// community_id as keyword; tls.ja3 and tls.ja3s are groups of hash and
// string; ssh.client.hassh is an object as Suricata documents it.
var e2eEVEMapping = map[string]string{
	"timestamp": "date", "event_type": "keyword", "src_ip": "ip", "dest_ip": "ip", "src_port": "long", "dest_port": "long",
	"proto": "keyword", "flow_id": "long", "community_id": "keyword", "host": "keyword", "app_proto": "keyword",
	"app_proto_ts": "keyword", "app_proto_tc": "keyword", "app_proto_orig": "keyword", "app_proto_expected": "keyword",
	"icmp_type": "long", "icmp_code": "long", "pcap_cnt": "long", "tx_id": "long", "in_iface": "keyword",

	"tcp": "object", "tcp.tcp_flags": "keyword", "tcp.tcp_flags_ts": "keyword", "tcp.tcp_flags_tc": "keyword",
	"tcp.syn": "boolean", "tcp.ack": "boolean", "tcp.psh": "boolean", "tcp.rst": "boolean", "tcp.fin": "boolean", "tcp.state": "keyword",

	"tls": "object", "tls.version": "keyword", "tls.sni": "keyword", "tls.subject": "keyword", "tls.issuerdn": "keyword",
	"tls.serial": "keyword", "tls.fingerprint": "keyword", "tls.session_resumed": "boolean",
	"tls.notbefore": "date", "tls.notafter": "date",
	"tls.ja3": "object", "tls.ja3.hash": "keyword", "tls.ja3.string": "keyword",
	"tls.ja3s": "object", "tls.ja3s.hash": "keyword", "tls.ja3s.string": "keyword",

	"http": "object", "http.hostname": "keyword", "http.url": "keyword", "http.http_user_agent": "keyword",
	"http.http_method": "keyword", "http.protocol": "keyword", "http.http_refer": "keyword", "http.http_content_type": "keyword",
	"http.redirect": "keyword", "http.status": "long", "http.length": "long", "http.http_port": "long",

	"ssh": "object", "ssh.client": "object", "ssh.server": "object",
	"ssh.client.proto_version": "keyword", "ssh.client.software_version": "keyword",
	"ssh.server.proto_version": "keyword", "ssh.server.software_version": "keyword",
	"ssh.client.hassh": "object", "ssh.client.hassh.hash": "keyword", "ssh.client.hassh.string": "keyword",

	"alert": "object", "alert.action": "keyword", "alert.gid": "long", "alert.signature_id": "long", "alert.rev": "long",
	"alert.signature": "keyword", "alert.category": "keyword", "alert.severity": "long", "alert.metadata": "flattened",

	"flow": "object", "flow.pkts_toserver": "long", "flow.pkts_toclient": "long", "flow.bytes_toserver": "long",
	"flow.bytes_toclient": "long", "flow.start": "date", "flow.end": "date", "flow.age": "long", "flow.state": "keyword",
	"flow.reason": "keyword", "flow.alerted": "boolean",

	"dns": "object", "fileinfo": "object", "email": "object", "smtp": "object", "stats": "object", "vars": "object", "flags": "object",
}

// e2eTimestampLayout is the module's layout for suricata.eve.timestamp.
const e2eTimestampLayout = "2006-01-02T15:04:05.999999999Z0700"

// e2eIndex is one index: the static mapping plus what dynamic mapping
// learnt from the documents so far.
type e2eIndex struct {
	types map[string]string
}

func newE2EIndex() *e2eIndex {
	ix := &e2eIndex{types: map[string]string{}}
	for k, v := range e2eEVEMapping {
		ix.types[k] = v
	}
	return ix
}

// e2eDynamicType is the type Elasticsearch's dynamic mapping gives a JSON
// value (strings that parse as its default date formats become dates).
func e2eDynamicType(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "object"
	case bool:
		return "boolean"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "float"
		}
		return "long"
	case string:
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return "date"
		}
		if _, err := time.Parse(records.TimestampLayout, x); err == nil {
			return "date"
		}
		return "keyword"
	}
	return ""
}

// index loads one document; it returns every conflict it meets.
func (ix *e2eIndex) index(doc map[string]any) []string {
	var errs []string
	ix.walk("", doc, &errs)
	if ts, _ := doc["timestamp"].(string); ts != "" {
		if _, err := time.Parse(e2eTimestampLayout, ts); err != nil {
			errs = append(errs, fmt.Sprintf("timestamp %q: Filebeat's layout: %v", ts, err))
		}
	}
	if v, ok := doc["tls"].(map[string]any); ok {
		// The module's script splits tls.version at its space into
		// tls.version_protocol and tls.version.
		if s, ok := v["version"].(string); ok && len(strings.Split(s, " ")) < 2 {
			errs = append(errs, fmt.Sprintf("tls.version %q: not \"PROTOCOL VERSION\"", s))
		}
	}
	return errs
}

func (ix *e2eIndex) walk(prefix string, v any, errs *[]string) {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if _, nested := e.([]any); nested {
				*errs = append(*errs, fmt.Sprintf("%s: array of arrays (flattened: the pairing is lost)", prefix))
				continue
			}
			ix.walk(prefix, e, errs)
		}
		return
	}
	if v == nil {
		return // null: no value, no mapping
	}
	got := e2eDynamicType(v)
	want, mapped := ix.types[prefix]
	switch {
	case prefix == "":
	case !mapped:
		ix.types[prefix] = got
	case want == "flattened":
		return
	case (want == "object") != (got == "object"):
		*errs = append(*errs, fmt.Sprintf("%s: %s value where the mapping has %s (object/concrete conflict)", prefix, got, want))
		return
	default:
		if bad := e2eTypeMismatch(want, v); bad != "" {
			*errs = append(*errs, fmt.Sprintf("%s: %s", prefix, bad))
		}
	}
	if m, ok := v.(map[string]any); ok {
		for k, c := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			ix.walk(p, c, errs)
		}
	}
}

// e2eTypeMismatch says why v does not fit a field of type want ("" if it
// does). Keyword fields take strings only: the module's scripts call
// string methods on them.
func e2eTypeMismatch(want string, v any) string {
	switch want {
	case "object":
		return ""
	case "keyword":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("%v is not a string (keyword)", v)
		}
	case "long":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Sprintf("%v is not a number (long)", v)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Sprintf("%v is not an integer (long)", v)
		}
	case "float":
		if _, ok := v.(json.Number); !ok {
			return fmt.Sprintf("%v is not a number (float)", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%v is not a boolean", v)
		}
	case "ip":
		s, _ := v.(string)
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Sprintf("%v is not an IP address", v)
		}
	case "date":
		// Elasticsearch's strict_date_optional_time, as far as EVE uses it.
		s, _ := v.(string)
		_, err1 := records.ParseTimestamp(s)
		_, err2 := time.Parse(e2eTimestampLayout, s)
		_, err3 := time.Parse("2006-01-02T15:04:05", s)
		if err1 != nil && err2 != nil && err3 != nil {
			return fmt.Sprintf("%v is not a date", v)
		}
	}
	return ""
}

func e2eDecodeEvent(t *testing.T, line []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	return m
}

// e2eClientHello returns the first flight of Go's TLS client: a real
// ClientHello with SNI, ALPN, GREASE-free lists and supported_versions.
func e2eClientHello(t *testing.T) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: "sni.eve.test", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
		_ = cl.Handshake()
		c.Close()
	}()
	buf := make([]byte, 16<<10)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(s, buf, 5)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// e2eRepresentativeEvents returns one event line of each type spoki
// writes, made by the encoders the telescope uses: syn; session of http,
// tls, ssh and generic; downloader and its alert; two_phase (both stages)
// and its alert.
func e2eRepresentativeEvents(t *testing.T) map[string][]byte {
	t.Helper()
	now := time.Date(2026, 12, 1, 21, 51, 5, 123456789, time.UTC)
	src, dst := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1")
	out := map[string][]byte{}

	p := records.Packet{Time: now, Src: src, Dst: dst, Proto: records.ProtoTCP, SrcPort: 40000, DstPort: 80, Seq: 4242,
		Flags: records.FlagSYN, TTL: 52, IPID: 7, Window: 64240, NumOptions: 2, Options: [records.MaxOptions]uint8{2, 4}, MSS: 1460,
		WScale: -1, Payload: []byte{1, 2}, Probed: true}
	out["syn"] = records.AppendSYNEvent(nil, &p)

	flow := records.Flow{Remote: netip.AddrPortFrom(src, 40000), Local: netip.AddrPortFrom(dst, 80), UserID: 9, ISN: 4242, Accepted: now}
	session := func(appProto string, detail any) []byte {
		s := records.Session{Flow: flow, End: now.Add(1500 * time.Millisecond), AppProto: appProto, Payload: []byte("x"),
			BytesToServer: 1, BytesToClient: 2, Detail: detail}
		line, err := records.AppendSessionEvent(nil, &s)
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	req, err := spokihttp.Parse([]byte("POST /cgi-bin/x HTTP/1.1\r\nHost: 198.51.100.1:8080\r\nUser-Agent: Mozila/5.0\r\n"+
		"Referer: http://x.test/\r\nContent-Length: 3\r\n\r\nabc"), spokihttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out["session/http"] = session("http", req)
	ch, err := spokitls.Parse(e2eClientHello(t))
	if err != nil {
		t.Fatal(err)
	}
	out["session/tls"] = session("tls", spokitls.NewDetail(&ch))
	kex := &ssh.KexInit{Kex: "curve25519-sha256,ext-info-c", HostKey: "ssh-ed25519", EncC2S: "aes128-ctr", EncS2C: "aes128-ctr",
		MacC2S: "hmac-sha2-256", MacS2C: "hmac-sha2-256", CmpC2S: "none", CmpS2C: "none"}
	sd := ssh.NewDetail(ssh.Client{Ident: "SSH-2.0-OpenSSH_9.6 Ubuntu-3", KexInit: kex}, nil)
	sd.Server = &ssh.Software{ProtoVersion: "2.0", SoftwareVersion: "OpenSSH_8.4p1"}
	out["session/ssh"] = session("ssh", sd)
	out["session/generic"] = session("generic", nil)

	d := handlers.Downloader{AppProto: "telnet", Source: "command", Tool: "wget", URL: "http://203.0.113.5/x.sh",
		Server: "203.0.113.5", Port: 80, Name: "x.sh"}
	if out["downloader"], err = records.AppendEvent(nil, handlers.EventDownloader, now, &flow, d); err != nil {
		t.Fatal(err)
	}
	if out["alert/downloader"], err = records.AppendAlertEvent(nil, now, &flow, &records.AlertDownloader, d.AppProto, handlers.EventDownloader, d); err != nil {
		t.Fatal(err)
	}

	// two_phase and its alert, from the live detector's feed.
	var lines [][]byte
	f := twophase.NewFeed(twophase.Config{Timeout: time.Minute, Memory: 1 << 20}, time.Minute, func(_ time.Time, l []byte) { lines = append(lines, l) })
	f.SetAlerts(true)
	one := records.Packet{Time: now, Src: src, Dst: dst, Proto: records.ProtoTCP, SrcPort: 1234, DstPort: 80, Seq: 11,
		Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
	f.SYN(&one)
	f.SYN(&p)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	f.Run(done)
	f.Session(&records.Session{Flow: flow, End: now.Add(time.Second), AppProto: "http", Payload: []byte("GET /")})
	f.Run(done)
	for _, l := range lines {
		typ, _ := e2eDecodeEvent(t, l)["event_type"].(string)
		stage, _ := e2eDecodeEvent(t, l)["stage"].(string)
		out[strings.TrimSuffix(typ+"/"+stage, "/")] = l
	}
	for _, k := range []string{"two_phase/phase_two", "two_phase/acked", "alert"} {
		if out[k] == nil {
			t.Fatalf("the feed wrote no %s event (%d lines)", k, len(lines))
		}
	}
	out["alert/two_phase"] = out["alert"]
	delete(out, "alert")
	return out
}

// TestEVEMapping loads a syn, session (http, tls, ssh, generic),
// downloader, two_phase and alert event, one index for all as Filebeat
// writes them, through the Suricata module's mapping: no object/concrete
// conflict, no type mismatch, and the values the module's processors
// parse (timestamp, tls.version) parse.
func TestEVEMapping(t *testing.T) {
	events := e2eRepresentativeEvents(t)
	names := make([]string, 0, len(events))
	for k := range events {
		names = append(names, k)
	}
	sort.Strings(names)
	suricata, err := os.ReadFile(filepath.Join("testdata", "suricata-eve-examples.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	examples := strings.Split(strings.TrimSpace(string(suricata)), "\n")
	if len(examples) < 5 {
		t.Fatalf("%d Suricata examples", len(examples))
	}
	// Both orders: dynamic mapping keeps the first type a field had. In
	// both, Suricata's own documented events come first, so that a field
	// spoki writes in another shape than Suricata's conflicts.
	for _, order := range [][]string{names, reversed(names)} {
		ix := newE2EIndex()
		for i, l := range examples {
			for _, e := range ix.index(e2eDecodeEvent(t, []byte(l))) {
				t.Errorf("Suricata example %d: %s", i+1, e)
			}
		}
		for _, name := range order {
			doc := e2eDecodeEvent(t, events[name])
			for _, e := range ix.index(doc) {
				t.Errorf("%s event: %s\n\t%s", name, e, events[name])
			}
		}
	}
	// The Suricata fields are where Suricata has them.
	for name, paths := range map[string][]string{
		"syn":          {"flow_id", "community_id", "timestamp", "src_ip", "dest_port", "proto"},
		"session/http": {"flow_id", "community_id", "http.hostname", "http.url", "http.http_user_agent", "http.http_method", "http.protocol", "http.request_headers"},
		"session/tls":  {"tls.version", "tls.sni", "tls.ja3.hash", "tls.ja3.string", "tls.ja4"},
		"session/ssh":  {"ssh.client.proto_version", "ssh.client.software_version", "ssh.client.hassh.hash", "ssh.client.hassh.string", "ssh.server.software_version"},
		"alert/downloader": {"alert.action", "alert.gid", "alert.signature_id", "alert.rev", "alert.signature", "alert.category",
			"alert.severity", "flow_id", "community_id"},
		"alert/two_phase": {"alert.signature_id", "two_phase.phase_one", "flow_id"},
	} {
		doc := e2eDecodeEvent(t, events[name])
		for _, p := range paths {
			if e2eField(doc, strings.Split(p, ".")...) == nil {
				t.Errorf("%s event has no %s: %s", name, p, events[name])
			}
		}
	}
	// One connection, one flow_id and community_id: the syn, its session,
	// the downloader, the two_phase events and the alerts.
	syn := e2eDecodeEvent(t, events["syn"])
	for _, name := range names {
		doc := e2eDecodeEvent(t, events[name])
		if doc["flow_id"] != syn["flow_id"] || doc["community_id"] != syn["community_id"] {
			t.Errorf("%s event: flow_id %v community_id %v, the syn's %v %v", name, doc["flow_id"], doc["community_id"], syn["flow_id"], syn["community_id"])
		}
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// TestEVEMappingRejectsOldNames shows the checker failing on what the
// event log wrote before it took Suricata's names: tls.ja3 as a string
// beside ja3_hash, tls.version as a number, http headers as nested pairs,
// and a timestamp with nanoseconds and Z (which the layout does take).
func TestEVEMappingRejectsOldNames(t *testing.T) {
	old := []string{
		`{"timestamp":"2026-11-25T11:03:32.123456789Z","event_type":"session","src_ip":"203.0.113.7","src_port":1,` +
			`"dest_ip":"198.51.100.1","dest_port":443,"proto":"TCP","tls":{"version":771,"ja3":"771,4865,0,29,0","ja3_hash":"0123"}}`,
		`{"timestamp":"2026-11-25T11:03:32.123456789Z","event_type":"session","src_ip":"203.0.113.7","src_port":1,` +
			`"dest_ip":"198.51.100.1","dest_port":80,"proto":"TCP","http":{"method":"GET","headers":[["Host","x"]]}}`,
		`{"timestamp":"2026-11-25T11:03:32.123456+0000","event_type":"alert","src_ip":"203.0.113.7","flow_id":"12","alert":"TWO PHASE"}`,
	}
	want := []string{"tls.ja3: keyword value where the mapping has object", "tls.version: 771 is not a string",
		"http.headers: array of arrays", "flow_id: 12 is not a number", "alert: keyword value where the mapping has object"}
	var got []string
	ix := newE2EIndex()
	for _, l := range old {
		got = append(got, ix.index(e2eDecodeEvent(t, []byte(l)))...)
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("the checker did not report %q; it reported:\n%s", w, all)
		}
	}
}

func e2eSplitPath(p string) []string { return strings.Split(p, ".") }
