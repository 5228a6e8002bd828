package test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

const (
	// portsScanTimeout bounds one nmap connect scan of one address
	// (nmap's --max-rate 3000 makes all ports about 22 s; it retries a
	// port up to 6 times, as responses are slow on a loaded machine).
	portsScanTimeout = 4 * time.Minute
	// portsWarmup is the last port of the warm-up scan whose memory is the
	// baseline: enough for the connections open at once to reach their
	// steady state at the scan's rate.
	portsWarmup = 4096
	// portsIdle is how long the telescope is left alone after a scan: long
	// enough for idle listeners to close (about a second) and for finished
	// connections and their lingering entries to go (5 s).
	portsIdle = 12 * time.Second
	// portsScavenge bounds how long the Go scavenger gets, after the GC
	// the test forces, to return freed memory to the kernel: RssAnon is
	// read until it has stopped falling for 3 s.
	portsScavenge = 30 * time.Second
	// portsGrowth bounds the growth from the warm-up to the full scans of
	// the anonymous RSS (RssAnon: heap, stacks; the binary's pages that
	// more code paths fault in are left out) and of the live heap.
	portsGrowth = 16 << 20
)

// TestFullPortScanMemory checks that memory does not grow with the ports
// touched. It runs nmap connect scans of one IPv4 and one IPv6 address of
// the telescope, first of ports 1-4096 (the baseline), then of every port,
// 1 to 65,535, and checks that every port answered, that no listener stays
// open, and that after each scan, once idle and collected, the anonymous
// RSS and the live heap after the full scans are within portsGrowth of the
// baseline. An idle process allocates nothing and would collect only at
// the runtime's periodic GC (2 minutes): the test forces that GC through
// --pprof so that it measures what is retained, not garbage. The figures
// are logged for the notes; with SPOKI_BIN built from a version that kept a
// listener per port forever, it measures that version (and fails).
func TestFullPortScanMemory(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "nmap", "curl")
	bin := labSpokiBin(t)
	// nmap's connect scan resets each connection right after its ACK, and
	// the reset can overtake the ACK into gVisor; such a connection then
	// waits for its first data. A short wait keeps the connections open at
	// once (a budget of their own, --max-conns) few, so that what is
	// measured is what grows with the ports touched.
	const pprof = "127.0.0.1:6061" // the telescope namespace's loopback
	extra := []string{"--stats-interval", "1s", "--first-data-timeout", "100ms", "--pprof", pprof}
	if portsRunHasFlag(t, bin, "max-conns-per-ip") {
		// Every connection comes from one scanner address: give it the
		// whole table, so that every port's handshake reaches gVisor and
		// the listeners, not the per-source caps, are what is measured.
		extra = append(extra, "--max-conns-per-ip", "4096", "--max-conns-per-net", "4096")
	}
	if portsRunHasFlag(t, bin, "synack-rate") {
		// Every SYN comes from one scanner address too: the reflection
		// guard would hold it at its rate, which is not what is measured.
		extra = append(extra, "--synack-rate", "0", "--synack-irregular-rate", "0")
	}
	tel := e2eStartTelescope(t, l, extra...)
	targets := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:5b0::7")}
	scan := func(last int) {
		t.Helper()
		for _, dst := range targets {
			ports := fmt.Sprintf("1-%d", last)
			args := []string{"-n", "-Pn", "-sT", "-p", ports, "--max-rate", "3000", "--max-retries", "6", "-oG", "-"}
			if dst.Is6() {
				args = append(args, "-6")
			}
			start := time.Now()
			out, errOut, code := e2eExec(t, l, l.Scanner, portsScanTimeout, nil, "nmap", append(args, dst.String())...)
			if code != 0 {
				t.Fatalf("nmap -sT %s: exit %d: %s", dst, code, e2eTruncate(errOut, 500))
			}
			open := strings.Count(out, "/open/tcp/")
			t.Logf("nmap -sT -p %s %s: %d ports open in %v", ports, dst, open, time.Since(start).Round(100*time.Millisecond))
			if open != last {
				if i := strings.Index(out, "Ignored State:"); i >= 0 {
					t.Logf("nmap: %s", strings.TrimSpace(out[i:]))
				}
				t.Errorf("nmap -sT -p %s %s: %d ports open, want %d (every port answered)", ports, dst, open, last)
			}
		}
	}
	// measure waits for the scan's listeners and connections to go, forces
	// a GC and returns the stats line and RssAnon after the scavenger's
	// turn.
	measure := func() (map[string]uint64, uint64) {
		t.Helper()
		time.Sleep(portsIdle)
		// Twice: what sync.Pools hold survives one GC (in their victim
		// caches) and goes with the second.
		for range 2 {
			if _, _, code := e2eExec(t, l, l.Telescope, e2eClientTimeout, nil, "curl", "-sf", "-o", "/dev/null",
				"http://"+pprof+"/debug/pprof/heap?gc=1"); code != 0 {
				t.Fatalf("forcing a GC through --pprof: curl exit %d", code)
			}
			time.Sleep(time.Second)
		}
		anon, steady := portsRSSAnon(t, tel.proc.Pid()), 0
		for deadline := time.Now().Add(portsScavenge); steady < 3 && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			if a := portsRSSAnon(t, tel.proc.Pid()); a+256<<10 < anon {
				anon, steady = a, 0
			} else {
				steady++
			}
		}
		return portsLastStats(t, tel.proc.Output()), portsRSSAnon(t, tel.proc.Pid())
	}

	scan(portsWarmup)
	base, anonBase := measure()
	scan(65535)
	after, anonAfter := measure()
	out := tel.stop(t)
	// The totals are in the final line: the periodic ones carry rates.
	final := e2eStats(t, out, "final")

	var peakRSS, peakListeners, peakActive uint64
	for _, s := range portsAllStats(out) {
		peakRSS = max(peakRSS, s["rss"])
		peakListeners = max(peakListeners, s["listeners"])
		peakActive = max(peakActive, s["active"])
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("after ports 1-%d: rss %.1f MiB, RssAnon %.1f MiB, heap_live %.1f MiB, listeners %d",
		portsWarmup, mib(base["rss"]), mib(anonBase), mib(base["heap_live"]), base["listeners"])
	t.Logf("after ports 1-65535: rss %.1f MiB, RssAnon %.1f MiB, heap_live %.1f MiB, listeners %d; rss peak %.1f MiB",
		mib(after["rss"]), mib(anonAfter), mib(after["heap_live"]), after["listeners"], mib(peakRSS))
	t.Logf("growth: RssAnon %+.1f MiB, heap_live %+.1f MiB, rss %+.1f MiB",
		mib(anonAfter)-mib(anonBase), mib(after["heap_live"])-mib(base["heap_live"]), mib(after["rss"])-mib(base["rss"]))
	_, hasListeners := after["listeners"]
	t.Logf("listeners: peak %d (reported: %t); connections active: peak %d", peakListeners, hasListeners, peakActive)
	t.Logf("synacks_out %d, handshakes %d, drops %d (conn_limit %d, listener %d, source_limit %d, net_limit %d)",
		final["synacks_out"], final["handshakes"], final["drops"], final["drop_conn_limit"], final["drop_listener"],
		final["drop_source_limit"], final["drop_net_limit"])

	total := uint64(2 * (portsWarmup + 65535))
	if got := final["synacks_out"]; got < total {
		t.Errorf("synacks_out = %d, want >= %d (one per port and family)", got, total)
	}
	if got := final["handshakes"]; got < total/2 {
		t.Errorf("handshakes = %d, want >= %d: the scans did not reach the listeners", got, total/2)
	}
	if anonAfter > anonBase+portsGrowth {
		t.Errorf("RssAnon grew by %.1f MiB from ports 1-%d to 1-65535, want < %.0f MiB", mib(anonAfter-anonBase), portsWarmup, mib(portsGrowth))
	}
	if after["heap_live"] > base["heap_live"]+portsGrowth {
		t.Errorf("heap_live grew by %.1f MiB from ports 1-%d to 1-65535, want < %.0f MiB",
			mib(after["heap_live"]-base["heap_live"]), portsWarmup, mib(portsGrowth))
	}
	if !hasListeners {
		t.Errorf("the stats line reports no listeners")
	} else if after["listeners"] != 0 || base["listeners"] != 0 {
		t.Errorf("listeners = %d and %d after %v idle, want 0 (idle listeners are closed)", base["listeners"], after["listeners"], portsIdle)
	}
}

// portsRSSAnon reads RssAnon of process pid, in bytes.
func portsRSSAnon(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of spoki: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("RssAnon %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no RssAnon in /proc/%d/status", pid)
	return 0
}

// portsRunHasFlag reports whether `spoki run` of bin knows --name, so that
// the test also runs against binaries older than the flag.
func portsRunHasFlag(t *testing.T, bin, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "run", "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ")
}

// portsAllStats parses every stats and final line of spoki's output (the
// periodic lines carry rates and gauges, the final line the totals).
func portsAllStats(output string) []map[string]uint64 {
	var res []map[string]uint64
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, "msg=stats ") && !strings.Contains(line, "msg=final ") {
			continue
		}
		m := map[string]uint64{}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			if n, ok := e2eStatNumber(v); ok {
				m[k] = n
			}
		}
		res = append(res, m)
	}
	return res
}

// portsLastStats returns the last stats line so far.
func portsLastStats(t *testing.T, output string) map[string]uint64 {
	t.Helper()
	all := portsAllStats(output)
	if len(all) == 0 {
		t.Fatalf("no stats line in spoki's output:\n%s", e2eTruncate(output, 4000))
	}
	return all[len(all)-1]
}
