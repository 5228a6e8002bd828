package test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// Metric keys the tests read, as the text format prints them.
const (
	metSYNACKs      = `spoki_netstack_packets_total{verdict="synack"}`
	metHTTPSessions = `spoki_handlers_sessions_total{app_proto="http"}`
	metGenSessions  = `spoki_handlers_sessions_total{app_proto="generic"}`
	metHTTPDuration = `spoki_handlers_session_duration_seconds_count{app_proto="http"}`
)

// metScrape fetches http://addr/metrics from inside the telescope
// namespace (the endpoint listens on that namespace's loopback) and
// returns every sample, keyed by name and labels as printed.
func metScrape(t *testing.T, l *lab.Lab, addr string) (map[string]float64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eClientTimeout)
	defer cancel()
	out, err := l.Command(ctx, l.Telescope, "curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "5",
		"http://"+addr+"/metrics").Output()
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Errorf("scrape %s: bad sample %q", addr, line)
			continue
		}
		samples[line[:i]] = v
	}
	return samples, nil
}

// metMustScrape is metScrape failing the test on error.
func metMustScrape(t *testing.T, l *lab.Lab, addr string) map[string]float64 {
	t.Helper()
	s, err := metScrape(t, l, addr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metWaitFor scrapes until cond holds for the samples or timeout passes;
// sessions are counted when they end, a moment after the client's exit.
func metWaitFor(t *testing.T, l *lab.Lab, addr, what string, timeout time.Duration, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := metMustScrape(t, l, addr)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics at %s: %s not seen within %v", addr, what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metCurl fetches a page of the telescope's http handler from the scanner.
func metCurl(t *testing.T, l *lab.Lab, url string) int {
	t.Helper()
	_, _, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5", url)
	return code
}

// TestMetricsMoveWithTraffic starts the telescope with --metrics, sends
// SYNs and one HTTP request, and checks that the counters moved by exactly
// what was sent: one SYN-ACK per SYN, one http session, one more sample in
// the duration histogram; and that the Go runtime collector is there.
func TestMetricsMoveWithTraffic(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl")
	const addr = "127.0.0.1:9108"
	tel := e2eStartTelescope(t, l, "--metrics", addr)

	before := metMustScrape(t, l, addr)
	for _, key := range []string{metSYNACKs, "go_goroutines", "process_resident_memory_bytes",
		`spoki_netstack_drops_total{cause="bad_cookie"}`, `spoki_filesink_queue_depth{queue="packet"}`,
		"spoki_filesink_bytes_written_total", "spoki_twophase_events_total", "spoki_tun_dropped_total"} {
		if _, ok := before[key]; !ok {
			t.Errorf("first scrape lacks %s", key)
		}
	}

	var targets []netip.AddrPort
	for i := range 5 {
		targets = append(targets, netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 20+i)), uint16(6000+i)))
	}
	res, code := e2eProbeSYN(t, l, targets, 2*time.Second)
	if code != 0 || len(res) != len(targets) {
		t.Fatalf("probe syn: exit %d, %d results, want 0 and %d", code, len(res), len(targets))
	}
	afterSYN := metMustScrape(t, l, addr)
	if got := afterSYN[metSYNACKs] - before[metSYNACKs]; got != float64(len(targets)) {
		t.Errorf("%s grew by %v, want %d (one per SYN)", metSYNACKs, got, len(targets))
	}

	if code := metCurl(t, l, "http://198.51.100.80/metrics-test"); code != 0 {
		t.Errorf("curl: exit %d, want 0", code)
	}
	after := metWaitFor(t, l, addr, "the http session", 10*time.Second, func(s map[string]float64) bool {
		return s[metHTTPSessions] > afterSYN[metHTTPSessions]
	})
	if got := after[metHTTPSessions] - before[metHTTPSessions]; got != 1 {
		t.Errorf("%s grew by %v, want 1", metHTTPSessions, got)
	}
	if got := after[metHTTPDuration] - before[metHTTPDuration]; got != 1 {
		t.Errorf("%s grew by %v, want 1", metHTTPDuration, got)
	}
	if after["spoki_filesink_records_written_total{kind=\"packet\"}"] < float64(len(targets)) {
		t.Logf("packets written so far: %v (the writer flushes on its own clock)", after["spoki_filesink_records_written_total{kind=\"packet\"}"])
	}
	tel.stop(t)
}

// TestMetricsReloadOnSIGHUP changes the config file of a running telescope
// and sends SIGHUP: the handler settings (pure mode) and the metrics
// address take effect at once, and a change that needs a restart
// (max-conns) is logged as not reloaded.
func TestMetricsReloadOnSIGHUP(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl")
	// SIGHUP reads the file as the user spoki dropped to: the directory
	// must be open to it, as /etc/spoki is (t.TempDir's parent is not).
	cfgDir, err := os.MkdirTemp("", "spoki-config-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cfgDir) })
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(cfgDir, "spoki.yaml")
	metWriteFile(t, cfgPath, "max-conns: 1000\nmetrics: 127.0.0.1:9108\n")
	tel := e2eStartTelescope(t, l, "--config", cfgPath)

	const oldAddr, newAddr = "127.0.0.1:9108", "127.0.0.1:9109"
	before := metMustScrape(t, l, oldAddr)
	if code := metCurl(t, l, "http://198.51.100.80/before-reload"); code != 0 {
		t.Errorf("curl before the reload: exit %d, want 0", code)
	}
	mid := metWaitFor(t, l, oldAddr, "the http session", 10*time.Second, func(s map[string]float64) bool {
		return s[metHTTPSessions] > before[metHTTPSessions]
	})

	metWriteFile(t, cfgPath, "max-conns: 500\nmetrics: "+newAddr+"\npure: true\n")
	if err := syscall.Kill(tel.proc.Pid(), syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	if err := tel.proc.WaitFor("msg=reloaded", 10*time.Second); err != nil {
		t.Fatalf("no reloaded line: %v", err)
	}
	out := tel.proc.Output()
	if !strings.Contains(out, `msg="not reloaded" key=max-conns running=1000 file=500`) {
		t.Errorf("no `not reloaded` line for max-conns in:\n%s", e2eTruncate(out, 4000))
	}
	for _, key := range []string{"key=pure ", "key=metrics "} {
		if strings.Contains(out, `msg="not reloaded" `+key) {
			t.Errorf("%s reported as not reloaded", key)
		}
	}
	if _, err := metScrape(t, l, oldAddr); err == nil {
		t.Errorf("the old metrics address %s still answers after the reload", oldAddr)
	}

	// Pure mode: the generic handler takes the request, records it and
	// resets, so curl fails; what counts is who served it.
	metCurl(t, l, "http://198.51.100.80/after-reload")
	after := metWaitFor(t, l, newAddr, "the generic session", 15*time.Second, func(s map[string]float64) bool {
		return s[metGenSessions] > mid[metGenSessions]
	})
	if after[metHTTPSessions] != mid[metHTTPSessions] {
		t.Errorf("%s = %v after the reload, want %v (pure mode sends HTTP to generic)",
			metHTTPSessions, after[metHTTPSessions], mid[metHTTPSessions])
	}
	// The counters survive the Mux swap.
	if after[metHTTPSessions] < 1 {
		t.Errorf("%s = %v, want the session from before the reload", metHTTPSessions, after[metHTTPSessions])
	}
	tel.stop(t)
}

// metWriteFile replaces name's content atomically, as an editor or a
// deployment tool does, so that a reload never reads half a file.
func metWriteFile(t *testing.T, name, body string) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}
