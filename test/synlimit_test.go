//go:build linux

package test

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
)

// TestSYNACKLimitLab sends irregular SYNs (hping3's: no TCP options) from
// one source, the scanner's own address so that every reply reaches its
// capture, to a telescope with a small irregular budget. The scanner-side
// tcpdump must see the burst answered and no more than the refill allows
// during the run (an upper bound, no timing); a regular SYN from the same
// source afterwards (spoki's probe, as a scanner's phase two) must still be
// answered; and every SYN must be in the raw log, the unanswered ones with
// probed=false, and counted in the stats line.
func TestSYNACKLimitLab(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "tcpdump", "hping3")
	const (
		burst    = 100
		rate     = 1 // per second: the refill during the run is a few SYN-ACKs at most
		n        = 600
		basePort = 1000
	)
	tel := e2eStartTelescope(t, l, "--synack-irregular-burst", strconv.Itoa(burst),
		"--synack-irregular-rate", strconv.Itoa(rate))
	target := netip.MustParseAddr("198.51.100.9")
	capt := e2eStartCapture(t, l, l.Scanner, l.ScannerIface, "tcp and src net "+lab.Prefix4.String())

	start := time.Now()
	// 1000 SYNs per second, destination ports basePort, basePort+1, ...
	out, errOut, code := e2eExec(t, l, l.Scanner, 60*time.Second, nil, "hping3", "-S", "-c", strconv.Itoa(n),
		"-i", "u1000", "-p", "++"+strconv.Itoa(basePort), target.String())
	elapsed := time.Since(start)
	if code < 0 {
		t.Fatalf("hping3 did not finish: %s%s", e2eTruncate(out, 2000), e2eTruncate(errOut, 2000))
	}
	// Phase two: a regular SYN (options, TTL 64) from the same source.
	phase2 := netip.AddrPortFrom(target, 80)
	res, pcode := e2eProbeSYN(t, l, []netip.AddrPort{phase2}, 2*time.Second)
	if pcode != 0 || len(res) != 1 || res[0].synacks != 1 {
		t.Errorf("regular SYN after the irregular budget was spent: %+v (exit %d), want one SYN-ACK", res, pcode)
	}
	_, segs := capt.stop(t)

	irregularAnswers := 0
	for _, s := range segs {
		if s.flags != "S." || s.dst.Addr() != lab.ScannerAddr4 || s.src.Addr() != target {
			continue
		}
		if p := s.src.Port(); p >= basePort && p < basePort+n {
			irregularAnswers++
		}
	}
	maxRefill := int(elapsed.Seconds()*rate) + 1
	if irregularAnswers < burst || irregularAnswers > burst+maxRefill {
		t.Errorf("capture: %d SYN-ACKs for %d irregular SYNs from one source, want the burst %d (at most %d more refilled in %v)",
			irregularAnswers, n, burst, maxRefill, elapsed.Round(time.Millisecond))
	}

	stats := e2eStats(t, tel.stop(t), "final")
	if got, want := e2eStatsValue(t, stats, "synacks_out"), uint64(irregularAnswers+1); got != want {
		t.Errorf("final stats: synacks_out=%d, want %d (the capture's)", got, want)
	}
	if got, want := e2eStatsValue(t, stats, "drop_syn_rate_irregular"), uint64(n-irregularAnswers); got != want {
		t.Errorf("final stats: drop_syn_rate_irregular=%d, want %d (tun_dropped=%d)", got, want, stats["tun_dropped"])
	}
	if got := e2eStatsValue(t, stats, "drop_syn_rate_regular"); got != 0 {
		t.Errorf("final stats: drop_syn_rate_regular=%d, want 0", got)
	}
	var probed, unprobed int
	for _, p := range e2eReadRawTCP(t, tel.logDir) {
		if p.Src != lab.ScannerAddr4 || p.Dst != target || !p.IsSYN() || p.DstPort < basePort || p.DstPort >= basePort+n {
			continue
		}
		switch {
		case p.Probed && p.Method == records.MethodSYNACK:
			probed++
		case !p.Probed && p.UserID == 0:
			unprobed++
		default:
			t.Errorf("raw log: SYN to port %d with probed=%v method=%v userid=%d", p.DstPort, p.Probed, p.Method, p.UserID)
		}
	}
	if probed != irregularAnswers || probed+unprobed != n {
		t.Errorf("raw log: %d SYNs probed and %d not, want %d and %d", probed, unprobed, irregularAnswers, n-irregularAnswers)
	}
	events := 0
	for _, e := range e2eReadEvents(t, tel.logDir) {
		if e.EventType == "syn" && e.SrcIP == lab.ScannerAddr4 && e.DestIP == target && e.DestPort >= basePort && e.DestPort < basePort+n {
			events++
		}
	}
	if events != n {
		t.Errorf("event log: %d syn events for the %d irregular SYNs, want one each, answered or not", events, n)
	}
}
