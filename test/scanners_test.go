package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// e2eSYNScanners counts the syn events of the log by scanner fingerprint,
// and the events that came from src.
func e2eSYNScanners(t *testing.T, dir, src string) (byScanner map[string]int, total int) {
	t.Helper()
	byScanner = map[string]int{}
	for _, e := range e2eRawEvents(t, dir) {
		if e["event_type"] != "syn" || e["src_ip"] != src {
			continue
		}
		s, _ := e["scanner"].(string)
		byScanner[s]++
		total++
	}
	return byScanner, total
}

// TestRealScanners runs Debian's zmap, masscan, nmap and hping3 from the
// lab's scanner host against the telescope, each bounded in rate and
// count, and checks that every probe is answered and fingerprinted as the
// tool that sent it.
func TestRealScanners(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "zmap", "masscan", "nmap", "hping3")
	src := lab.ScannerAddr4.String()
	gw := l.TelescopeMAC.String()

	t.Run("zmap", func(t *testing.T) {
		tel := e2eStartTelescope(t, l)
		// Debian's default blocklist excludes the documentation prefixes:
		// an empty one lets zmap scan the lab's (and nothing else).
		block := filepath.Join(t.TempDir(), "blocklist.conf")
		if err := os.WriteFile(block, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// The whole /24 on one port, 1000 pps, answers counted by zmap.
		var out, errOut string
		var code int
		for attempt := 1; ; attempt++ {
			out, errOut, code = e2eExec(t, l, l.Scanner, 60*time.Second, nil, "zmap", "-b", block, "-p", "80", "-i", l.ScannerIface,
				"-G", gw, "-S", src, "-r", "1000", "-c", "3", "-P", "2", "-q", "-o", "-", "--disable-syslog", "198.51.100.0/24")
			// Debian's zmap 2.1.1 aborts now and then (about one run in
			// a hundred at this rate, with or without a telescope) in its
			// own target lookup, before or while it sends: an upstream
			// bug (zmap/zmap#310, #786), not an answer of ours. Its
			// SYNs so far are zmap's too, so a second run keeps every
			// check below; a second abort fails the test.
			if code == 0 || attempt == 2 || !strings.Contains(errOut, "constraint_lookup_index: Assertion") {
				break
			}
			t.Logf("zmap aborted in its constraint lookup (upstream bug), running it again: %s", e2eTruncate(errOut, 300))
		}
		tel.stop(t)
		if code != 0 {
			t.Fatalf("zmap: exit %d: %s", code, e2eTruncate(errOut, 500))
		}
		if got := len(strings.Fields(out)); got != 256 {
			t.Errorf("zmap saw %d of 256 addresses answer", got)
		}
		by, total := e2eSYNScanners(t, tel.logDir, src)
		if total < 256 || by["zmap"] != total {
			t.Errorf("syn events by scanner = %v (total %d), want all %d+ zmap", by, total, 256)
		}
	})

	t.Run("masscan", func(t *testing.T) {
		tel := e2eStartTelescope(t, l)
		out, errOut, code := e2eExec(t, l, l.Scanner, 60*time.Second, nil, "masscan", "198.51.100.0/28",
			"-p80,443,8080", "--rate", "500", "-e", l.ScannerIface, "--router-mac", gw, "--source-ip", src,
			"--wait", "3", "--retries", "2")
		tel.stop(t)
		if code != 0 {
			t.Fatalf("masscan: exit %d: %s", code, e2eTruncate(errOut, 500))
		}
		// masscan's own receive path can miss a reply on a busy box: it
		// retries, and the distinct ports it found are what count.
		found := map[string]bool{}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "Discovered open port") {
				found[strings.Join(strings.Fields(line), " ")] = true
			}
		}
		if len(found) != 48 {
			t.Errorf("masscan found %d of 48 open ports", len(found))
		}
		by, total := e2eSYNScanners(t, tel.logDir, src)
		if total < 48 || by["masscan"] != total {
			t.Errorf("syn events by scanner = %v (total %d), want all 48+ masscan", by, total)
		}
	})

	t.Run("nmap", func(t *testing.T) {
		tel := e2eStartTelescope(t, l)
		_, errOut, code := e2eExec(t, l, l.Scanner, 90*time.Second, nil, "nmap", "-n", "-Pn", "-sS",
			"-p", "21,22,23,80,443,8080", "--max-retries", "0", "198.51.100.60")
		if code != 0 {
			t.Fatalf("nmap -sS: exit %d: %s", code, e2eTruncate(errOut, 500))
		}
		out, errOut, code := e2eExec(t, l, l.Scanner, 120*time.Second, nil, "nmap", "-n", "-Pn", "-sV",
			"--version-intensity", "0", "-p", "80,8080", "198.51.100.61")
		tel.stop(t)
		if code != 0 {
			t.Fatalf("nmap -sV: exit %d: %s", code, e2eTruncate(errOut, 500))
		}
		if !strings.Contains(out, "80/tcp") {
			t.Errorf("nmap -sV output lacks port 80: %s", e2eTruncate(out, 500))
		}
		// The raw SYNs of -sS all carry nmap's fingerprint; -sV's kernel
		// connections are regular SYNs and sessions with its probes.
		nmapSYNs := 0
		sessions := 0
		for _, e := range e2eRawEvents(t, tel.logDir) {
			if e["src_ip"] != src {
				continue
			}
			switch {
			case e["event_type"] == "syn" && e["dest_ip"] == "198.51.100.60":
				if e["scanner"] != "nmap" {
					t.Errorf("nmap -sS SYN fingerprinted %v: %v", e["scanner"], e)
				}
				nmapSYNs++
			case e["event_type"] == "session" && e["dest_ip"] == "198.51.100.61":
				sessions++
			}
		}
		if nmapSYNs < 6 {
			t.Errorf("nmap -sS: %d SYN events, want >= 6", nmapSYNs)
		}
		if sessions == 0 {
			t.Errorf("nmap -sV: no session recorded its probes")
		}
	})

	t.Run("hping3", func(t *testing.T) {
		tel := e2eStartTelescope(t, l)
		_, errOut, code := e2eExec(t, l, l.Scanner, 30*time.Second, nil, "hping3", "-S", "-c", "20", "-i", "u10000",
			"-p", "++1000", "198.51.100.70")
		tel.stop(t)
		if code != 0 && !strings.Contains(errOut, "packets received") {
			t.Fatalf("hping3: exit %d: %s", code, e2eTruncate(errOut, 500))
		}
		if !strings.Contains(errOut, "20 packets received") {
			t.Errorf("hping3 did not get 20 answers: %s", e2eTruncate(errOut, 400))
		}
		_, total := e2eSYNScanners(t, tel.logDir, src)
		if total != 20 {
			t.Errorf("%d syn events from hping3, want 20", total)
		}
		for _, e := range e2eRawEvents(t, tel.logDir) {
			if e["event_type"] == "syn" && e["irregular"] != true {
				t.Errorf("hping3 SYN (no TCP options) not irregular: %v", e)
				break
			}
		}
	})
}
