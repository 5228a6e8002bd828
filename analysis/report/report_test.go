package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/assemble"
	"github.com/spoki-telescope/spoki/records"
)

// exampleAssembled runs assemble (flush at EOF) over the example logs into a
// temporary directory and returns it with the log directory.
func exampleAssembled(t *testing.T) (outDir, logDir string) {
	t.Helper()
	logDir = filepath.Join("..", "..", "records", "testdata", "spoki-example-logs")
	if _, err := os.Stat(logDir); err != nil {
		t.Fatalf("example logs: %v", err)
	}
	outDir = t.TempDir()
	sink := &assemble.FileSink{Dir: outDir, Tag: "test"}
	cfg := assemble.Config{Dir: logDir, Tag: "test", Start: time.Date(2021, 10, 13, 21, 0, 0, 0, time.UTC), FlushAtEOF: true}
	if err := assemble.Run(context.Background(), cfg, sink, &assemble.Stats{}); err != nil {
		t.Fatal(err)
	}
	if len(sink.Written) == 0 {
		t.Fatal("assemble wrote no files")
	}
	return outDir, logDir
}

// readJSONLines returns every line of the files in dir as a generic map.
func readJSONLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var out []map[string]any
	for _, f := range files {
		rc, err := records.OpenLogSniffed(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(rc)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				break
			}
			out = append(out, m)
		}
		rc.Close()
	}
	return out
}

// jsonOf renders r with WriteJSON and decodes it back, so that the tests
// check the JSON output and not the Go struct.
func jsonOf(t *testing.T, r *Report) *Report {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("the JSON does not decode: %v", err)
	}
	return &back
}

// num reads a JSON number from a path of keys.
func num(m map[string]any, path ...string) float64 {
	var v any = m
	for _, k := range path {
		o, _ := v.(map[string]any)
		v = o[k]
	}
	f, _ := v.(float64)
	return f
}

// indep holds counts computed in a test from the raw lines.
type indep struct {
	syns, irregular, sessions, twoPhase int
	sources, nets                       map[netip.Addr]bool
	hours                               map[int64][3]int // syns, irregular, sources
	hourSrc                             map[int64]map[netip.Addr]bool
	scanners                            map[string]int
	ports                               map[string]map[int]int
	delays                              []float64
	withoutAck                          int
}

func newIndep() *indep {
	return &indep{sources: map[netip.Addr]bool{}, nets: map[netip.Addr]bool{}, hours: map[int64][3]int{},
		hourSrc: map[int64]map[netip.Addr]bool{}, scanners: map[string]int{},
		ports: map[string]map[int]int{"rs": {}, "is": {}, "tp": {}}}
}

func (c *indep) syn(t time.Time, src string, irregular bool, scanner string) {
	c.syns++
	a := netip.MustParseAddr(src).Unmap()
	c.sources[a] = true
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	c.nets[p.Addr()] = true
	h := t.Unix() / 3600
	v := c.hours[h]
	v[0]++
	if irregular {
		c.irregular++
		v[1]++
	}
	if c.hourSrc[h] == nil {
		c.hourSrc[h] = map[netip.Addr]bool{}
	}
	c.hourSrc[h][a] = true
	v[2] = len(c.hourSrc[h])
	c.hours[h] = v
	c.scanners[scanner]++
}

// check compares the report's JSON with the independent counts.
func (c *indep) check(t *testing.T, r *Report) {
	t.Helper()
	tt := r.Totals
	// Past Limits.ExactDistinct the distinct counts are estimates: within
	// 6% (4 standard errors of 4096 registers).
	near := func(got, want int) bool {
		if !tt.Estimated {
			return got == want
		}
		return math.Abs(float64(got-want)) <= 0.06*float64(want)
	}
	if tt.SYNs != c.syns || tt.Irregular != c.irregular || !near(tt.Sources, len(c.sources)) || !near(tt.Networks, len(c.nets)) {
		t.Errorf("totals: syns %d irregular %d sources %d networks %d; the lines hold %d %d %d %d",
			tt.SYNs, tt.Irregular, tt.Sources, tt.Networks, c.syns, c.irregular, len(c.sources), len(c.nets))
	}
	if tt.Sessions != c.sessions {
		t.Errorf("sessions = %d, the lines hold %d", tt.Sessions, c.sessions)
	}
	seen := 0
	for _, h := range r.Hours {
		want := c.hours[h.Start.Unix()/3600]
		srcOK := h.Sources == want[2] || h.Estimated && math.Abs(float64(h.Sources-want[2])) <= 0.06*float64(want[2])
		if h.SYNs != want[0] || h.Irregular != want[1] || !srcOK {
			t.Errorf("hour %s: syns %d irregular %d sources %d; the lines hold %v", h.Start, h.SYNs, h.Irregular, h.Sources, want)
		}
		if h.SYNs > 0 {
			seen++
		}
	}
	if seen != len(c.hours) {
		t.Errorf("the series has %d hours with SYNs, the lines %d", seen, len(c.hours))
	}
	for _, s := range r.Scanners {
		if s.SYNs != c.scanners[s.Name] {
			t.Errorf("scanner %s: %d SYNs, the lines hold %d", s.Name, s.SYNs, c.scanners[s.Name])
		}
	}
	for _, p := range r.Ports {
		total := 0
		for _, n := range c.ports[p.Class] {
			total += n
		}
		if p.Total != total || p.PortsTargeted != len(c.ports[p.Class]) {
			t.Errorf("ports %s: total %d over %d ports; the lines hold %d over %d", p.Class, p.Total, p.PortsTargeted, total, len(c.ports[p.Class]))
		}
		for i, pc := range p.Top {
			if pc.Count != c.ports[p.Class][pc.Port] {
				t.Errorf("ports %s: port %d count %d, the lines hold %d", p.Class, pc.Port, pc.Count, c.ports[p.Class][pc.Port])
			}
			if i > 0 && pc.Count > p.Top[i-1].Count {
				t.Errorf("ports %s: not sorted at %d", p.Class, i)
			}
		}
	}
	tp := r.TwoPhase
	if tp.Events != c.twoPhase || tp.Delays != len(c.delays) || tp.Contact.All != c.twoPhase || tp.Contact.WithoutAck != c.withoutAck {
		t.Errorf("two-phase: %d events, %d delays, contact %+v; the lines hold %d events, %d delays, %d without ack",
			tp.Events, tp.Delays, tp.Contact, c.twoPhase, len(c.delays), c.withoutAck)
	}
	ct := tp.Contact
	if ct.All != ct.WithoutAck+ct.WithoutPayload+ct.WithPayload || ct.WithPayload != ct.ASCII+ct.Hex+ct.Downloader {
		t.Errorf("contact types %+v do not add up", ct)
	}
	for _, p := range tp.DelayCDF {
		n := 0
		for _, d := range c.delays {
			if d <= p.DelayS {
				n++
			}
		}
		if p.Count != n || math.Abs(p.Fraction-float64(n)/float64(len(c.delays))) > 1e-12 {
			t.Errorf("CDF at %gs: %d (%.4f), the lines hold %d", p.DelayS, p.Count, p.Fraction, n)
		}
	}
	if len(c.delays) > 0 && (len(tp.DelayCDF) == 0 || tp.DelayCDF[len(tp.DelayCDF)-1].Fraction != 1) {
		t.Errorf("CDF %v does not reach 1", tp.DelayCDF)
	}
}

// fingerprint is records.Fingerprint's rules, written again from the
// README for the test.
func fingerprint(ipid, ttl, window int, seq uint32, daddr string, dport int, opts []any) string {
	if ipid == 54321 {
		return "zmap"
	}
	if a := netip.MustParseAddr(daddr); a.Is4() {
		b := a.As4()
		d := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if uint32(ipid) == (d^uint32(dport)^seq)&0xffff {
			return "masscan"
		}
		if seq == d {
			return "mirai"
		}
	}
	if len(opts) == 1 && opts[0] == "mss" && (window == 1024 || window == 2048 || window == 3072 || window == 4096) {
		return "nmap"
	}
	return "unknown"
}

func TestExampleReport(t *testing.T) {
	outDir, logDir := exampleAssembled(t)
	built, err := Build(context.Background(), Config{RawDir: logDir}, []string{outDir})
	if err != nil {
		t.Fatal(err)
	}
	r := jsonOf(t, built)

	c := newIndep()
	lines := readJSONLines(t, outDir)
	for _, rec := range lines {
		tag, _ := rec["tag"].(string)
		slotOf := func(k string) map[string]any { m, _ := rec[k].(map[string]any); return m }
		for _, k := range []string{"isyn", "rsyn"} {
			s := slotOf(k)
			if s == nil {
				continue
			}
			tr := s["trigger"].(map[string]any)
			pl := tr["payload"].(map[string]any)
			opts, _ := pl["options"].([]any)
			irr := num(tr, "ipid") == 54321 || num(tr, "ttl") > 200 || len(opts) == 0
			c.syn(time.UnixMilli(int64(num(tr, "timestamp"))), tr["saddr"].(string), irr,
				fingerprint(int(num(tr, "ipid")), int(num(tr, "ttl")), int(num(pl, "window_size")), uint32(num(pl, "snum")), tr["daddr"].(string), int(num(pl, "dport")), opts))
		}
		for _, k := range []string{"iack", "rack"} {
			if slotOf(k) != nil {
				c.sessions++
			}
		}
		cat, anchor := "", ""
		switch {
		case strings.HasPrefix(tag, "isyn"):
			cat, anchor = "is", "isyn"
		case strings.HasPrefix(tag, "rsyn"):
			cat, anchor = "rs", "rsyn"
		case strings.HasPrefix(tag, "two-phase"):
			cat, anchor = "tp", "isyn"
			c.twoPhase++
			c.delays = append(c.delays, (num(slotOf("rsyn"), "trigger", "timestamp")-num(slotOf("isyn"), "trigger", "timestamp"))/1000)
			if slotOf("rack") == nil {
				c.withoutAck++
			}
		}
		if cat != "" {
			c.ports[cat][int(num(slotOf(anchor), "trigger", "payload", "dport"))]++
		}
	}
	c.check(t, r)
	if r.Totals.Records != len(lines) || r.Totals.ParseErrors != 0 || r.TwoPhase.Events == 0 {
		t.Errorf("records %d, parse errors %d, two-phase %d; want the %d lines, none, some", r.Totals.Records, r.Totals.ParseErrors, r.TwoPhase.Events, len(lines))
	}
	if len(r.Tags) != 1 || r.Tags[0] != "test" || r.Start == nil || r.Start.Year() != 2021 || len(r.Inputs) == 0 || r.Inputs[0].Bytes == 0 {
		t.Errorf("tags %v, start %v, inputs %+v: want test, 2021, the files with their sizes", r.Tags, r.Start, r.Inputs)
	}
	// The lab's test-spoki scenario: wget http://141.22.28.35/evil.
	if r.TwoPhase.Contact.Downloader == 0 || !slices.ContainsFunc(r.DownloaderHosts.Items, func(k KeyCount) bool { return k.Key == "141.22.28.35" }) {
		t.Errorf("contact %+v, downloader hosts %+v: want the downloader of 84.46.0.125", r.TwoPhase.Contact, r.DownloaderHosts)
	}
	checkPage(t, built, r)
}

// sections are the ids every page has.
var sections = []string{"summary", "inputs", "hourly", "chart-syns", "chart-sources", "chart-networks", "irregular",
	"chart-irregular", "scanners", "ports", "ports-rs", "ports-is", "ports-tp", "delay", "delay-cdf", "contact-types",
	"payload-prefixes", "downloaders", "credentials", "fingerprints", "ja4", "hassh", "limits"}

// checkPage renders the page, loads it in headless Chromium (DOM and a
// screenshot) and checks its sections, its totals against the JSON and
// that the browser reported no CSP violation.
func checkPage(t *testing.T, built, r *Report) {
	t.Helper()
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	if err := built.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	os.WriteFile(page, raw, 0o644)
	// Attacker text (payloads naming URLs) is text, escaped; no element
	// or rule may load anything.
	if m := regexp.MustCompile(`(?i)<script|\s(src|href|xlink:href|action|srcset)\s*=|url\(|@import`).Find(raw); m != nil {
		t.Errorf("page contains %q: want no script and no external assets", m)
	}
	shot := filepath.Join(dir, "report.png")
	if p := os.Getenv("REPORT_SCREENSHOT"); p != "" {
		shot = p
	}
	dom, console := chromium(t, page, "--dump-dom")
	_, console2 := chromium(t, page, "--screenshot="+shot, "--window-size=1200,6000", "--hide-scrollbars")
	for _, line := range append(console, console2...) {
		if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "Refused") {
			t.Errorf("Chromium console: %s", line)
		}
	}
	for _, id := range sections {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("the page has no section %q", id)
		}
	}
	want := map[string]int{"syns": r.Totals.SYNs, "irregular": r.Totals.Irregular, "sources": r.Totals.Sources,
		"networks": r.Totals.Networks, "sessions": r.Totals.Sessions, "two_phase": r.TwoPhase.Events,
		"records": r.Totals.Records, "parse_errors": r.Totals.ParseErrors}
	re := regexp.MustCompile(`data-key="([a-z_]+)">([0-9]+)<`)
	got := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(dom, -1) {
		got[m[1]] = m[2]
	}
	for k, v := range want {
		if got[k] != fmt.Sprint(v) {
			t.Errorf("page total %s = %q, the JSON %d", k, got[k], v)
		}
	}
	if n := strings.Count(dom, "<polyline"); r.TwoPhase.Delays > 0 && n != 5 {
		t.Errorf("page has %d chart lines, want 5 (SYNs, sources, /24s, irregular share, CDF)", n)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The page is drawn: its style applied (the blue of the lines and
	// bars is the style sheet's, so a blocked sheet leaves none).
	blue := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if cr>>8 < 0x50 && cg>>8 > 0x60 && cg>>8 < 0x80 && cb>>8 > 0x98 && cb>>8 < 0xb0 {
				blue++
			}
		}
	}
	if blue < 50 {
		t.Errorf("the screenshot has %d pixels of the charts' blue, want the styled charts", blue)
	}
}

// TestCSPViolationSeen checks that checkPage's console check can fail: a
// page whose style hash is wrong makes Chromium report a violation.
func TestCSPViolationSeen(t *testing.T) {
	page := filepath.Join(t.TempDir(), "bad.html")
	var buf bytes.Buffer
	(&Report{}).WriteHTML(&buf)
	bad := strings.Replace(buf.String(), "sha256-", "sha256-x", 1)
	os.WriteFile(page, []byte(bad), 0o644)
	_, console := chromium(t, page, "--dump-dom")
	if !slices.ContainsFunc(console, func(s string) bool { return strings.Contains(s, "Content Security Policy") }) {
		t.Errorf("no CSP violation reported for a wrong style hash; console: %q", console)
	}
}

// chromium loads page in headless Chromium with args and returns its
// standard output and the console lines it logged. No network: the page
// is a local file and every background service is off.
func chromium(t *testing.T, page string, args ...string) (string, []string) {
	t.Helper()
	bin := "/usr/bin/chromium"
	if _, err := os.Stat(bin); err != nil {
		if p, lerr := exec.LookPath("chromium"); lerr == nil {
			bin = p
		} else if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		} else {
			t.Skip("chromium is not installed (apt-get install -y chromium)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, "file://"+page)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	var console []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			console = append(console, line)
		}
	}
	return stdout.String(), console
}

func TestTop(t *testing.T) {
	var p ports
	for _, port := range []int{80, 23, 23, 443, 80, 22, 22} {
		p.add(port)
	}
	got := fmt.Sprint(p.top(3))
	// Ties keep first-seen order: 80 before 23 before 22.
	want := "[{80 2 28.57} {23 2 28.57} {22 2 28.57}]"
	if got != want {
		t.Errorf("top(3) = %s, want %s", got, want)
	}
}

func TestPyFloat(t *testing.T) {
	tests := []struct {
		name string
		in   float64
		want string
	}{
		{"whole", 50, "50.0"},
		{"two decimals", 33.33, "33.33"},
		{"zero", 0, "0.0"},
		{"hundred", 100, "100.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pyFloat(tc.in); got != tc.want {
				t.Errorf("pyFloat(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestKnownScanners(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ips.alpha.txt"), []byte("# research\r\n203.0.113.7\r\n\r\n2001:db8::7\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ips.beta.txt"), nil, 0o644) // empty: must not stop the loading
	os.WriteFile(filepath.Join(dir, "ips.gamma.txt"), []byte("198.51.100.0/28 # a whole net\n"), 0o644)
	ks, err := LoadKnownScanners(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, addr, want string
	}{
		{"builtin censys", "192.35.169.4", "censys"},
		{"builtin shadowserver", "74.82.47.3", "shadowserver"},
		{"list with CRLF", "203.0.113.7", "alpha"},
		{"ipv6 in list", "2001:db8::7", "alpha"},
		{"after an empty list", "198.51.100.9", "gamma"},
		{"unknown", "198.51.100.99", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := ks.Lookup(netip.MustParseAddr(tc.addr))
			if got != tc.want {
				t.Errorf("Lookup(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
	if _, err := LoadKnownScanners(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("LoadKnownScanners(missing dir) = %v, want the built-ins", err)
	}
}

// TestHostileStrings checks that what attackers choose (payloads, user
// names, fingerprints) reaches the page as text: no element, attribute or
// style comes from it.
func TestHostileStrings(t *testing.T) {
	dir := t.TempDir()
	evil := `</td><script>alert(1)</script><img src=x onerror=alert(1)><style>*{}</style>`
	js := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	lines := []string{
		fmt.Sprintf(`{"timestamp":"2026-11-25T10:00:00.000000000Z","event_type":"session","src_ip":"203.0.113.1","src_port":1,"dest_ip":"198.51.100.1","dest_port":23,"app_proto":"telnet","payload":%s,"telnet":{"credentials":[{"username":%s,"password":%s}]},"tls":{"ja4":%s}}`,
			js(base64.StdEncoding.EncodeToString([]byte(evil))), js(evil), js(evil+"\x1b[2J"), js(evil)),
		fmt.Sprintf(`{"timestamp":"2026-11-25T10:00:01.000000000Z","event_type":"downloader","src_ip":"203.0.113.1","src_port":1,"dest_ip":"198.51.100.1","dest_port":80,"server":%s,"name":%s}`, js(evil), js(evil)),
	}
	os.WriteFile(filepath.Join(dir, "x.events.20261125-10.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	r, err := Build(context.Background(), Config{}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if r.Credentials.Total != 1 || r.JA4.Total != 1 || r.DownloaderHosts.Total != 1 || r.PayloadPrefixes.Total != 1 {
		t.Fatalf("credentials %d, ja4 %d, hosts %d, prefixes %d: want each seen once", r.Credentials.Total, r.JA4.Total, r.DownloaderHosts.Total, r.PayloadPrefixes.Total)
	}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the page does not show the attacker's text escaped")
	}
	for _, bad := range []string{"<script", "<img", "<style>*", "\x1b"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q from attacker input", bad)
		}
	}
	if strings.Count(page, "<style>") != 1 {
		t.Errorf("the page has %d style elements, want its own only", strings.Count(page, "<style>"))
	}
}
