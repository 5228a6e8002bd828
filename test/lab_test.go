package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
)

// e2eSYNWait is how long the SYN checks listen after the last SYN: a
// retransmitted SYN-ACK would come within it (Linux retransmits after 1 s).
const e2eSYNWait = 5 * time.Second

// e2eSYNTargets returns count distinct targets in p: the extremes given
// first, then random ones from a fixed seed.
func e2eSYNTargets(t *testing.T, p netip.Prefix, count int, seed uint64, extremes ...netip.AddrPort) []netip.AddrPort {
	t.Helper()
	seen := map[netip.AddrPort]bool{}
	var out []netip.AddrPort
	for _, ap := range extremes {
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
	}
	random, err := lab.SYNTargets([]netip.Prefix{p}, count, seed)
	if err != nil {
		t.Fatalf("SYNTargets: %v", err)
	}
	for _, ap := range random {
		if len(out) == count {
			break
		}
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
	}
	return out
}

// e2eCheckSYNProbe checks `spoki probe syn`'s results: one per target, each
// with exactly one SYN-ACK acknowledging seq+1. It returns the flows probed.
func e2eCheckSYNProbe(t *testing.T, targets []netip.AddrPort, res []e2eSYNResult, code int, client netip.Addr) []e2eFlowKey {
	t.Helper()
	if code != 0 {
		t.Errorf("spoki probe syn: exit %d, want 0", code)
	}
	if len(res) != len(targets) {
		t.Fatalf("spoki probe syn printed %d results, want %d", len(res), len(targets))
	}
	var flows []e2eFlowKey
	for i, r := range res {
		if r.target != targets[i] {
			t.Errorf("result %d is for %s, want %s", i, r.target, targets[i])
		}
		if r.synacks != 1 || !r.ackOK {
			t.Errorf("SYN to %s: synacks=%d ack_ok=%t, want exactly one SYN-ACK with ack = seq+1", r.target, r.synacks, r.ackOK)
		}
		flows = append(flows, e2eFlowKey{client: netip.AddrPortFrom(client, r.sport), server: r.target})
	}
	return flows
}

// e2eCheckCapturedSYNACKs checks the scanner-side capture of flows: exactly
// one SYN from the scanner and exactly one segment back, a SYN-ACK whose ack
// is the SYN's seq+1. want maps flows whose SYN's seq is known to it.
func e2eCheckCapturedSYNACKs(t *testing.T, segs []e2eSegment, flows []e2eFlowKey, wantSeq map[e2eFlowKey]uint32) {
	t.Helper()
	type seen struct {
		syns, replies, synacks int
		synSeq, ack            uint32
		replyFlags             []string
	}
	byFlow := map[e2eFlowKey]*seen{}
	get := func(k e2eFlowKey) *seen {
		s := byFlow[k]
		if s == nil {
			s = &seen{}
			byFlow[k] = s
		}
		return s
	}
	for _, s := range segs {
		switch {
		case s.flags == "S":
			g := get(e2eFlowKey{client: s.src, server: s.dst})
			g.syns++
			g.synSeq = s.seq
		default:
			g := get(e2eFlowKey{client: s.dst, server: s.src})
			// Only segments from the telescope side count as replies.
			if lab.Prefix4.Contains(s.src.Addr()) || lab.Prefix6.Contains(s.src.Addr()) {
				g.replies++
				g.replyFlags = append(g.replyFlags, s.flags)
				if s.flags == "S." {
					g.synacks++
					g.ack = s.ack
				}
			}
		}
	}
	for _, f := range flows {
		g := byFlow[f]
		if g == nil {
			t.Errorf("capture: nothing seen for %s -> %s", f.client, f.server)
			continue
		}
		if g.syns != 1 {
			t.Errorf("capture: %d SYNs %s -> %s, want 1", g.syns, f.client, f.server)
		}
		if seq, ok := wantSeq[f]; ok && g.synSeq != seq {
			t.Errorf("capture: SYN %s -> %s has seq %d, want %d", f.client, f.server, g.synSeq, seq)
		}
		if g.synacks != 1 || g.replies != 1 {
			t.Errorf("capture: %s -> %s got replies %v, want exactly one SYN-ACK and nothing else within %v",
				f.server, f.client, g.replyFlags, e2eSYNWait)
			continue
		}
		if g.ack != g.synSeq+1 {
			t.Errorf("capture: SYN-ACK %s -> %s acks %d, want SYN seq+1 = %d", f.server, f.client, g.ack, g.synSeq+1)
		}
	}
}

// e2eCheckSYNRecords checks the raw and reply logs for flows: one SYN row
// each, probed=true, method tcp-synack, probe anum = seq+1 and a unique
// userid, joined to exactly one tcp-synack reply row with the flow's
// addresses. It returns the SYN rows' seq by flow.
func e2eCheckSYNRecords(t *testing.T, raw []records.Packet, replies []records.Reply, flows []e2eFlowKey) map[e2eFlowKey]uint32 {
	t.Helper()
	synRows := map[e2eFlowKey][]records.Packet{}
	for _, p := range raw {
		if p.IsSYN() {
			synRows[e2eRowFlow(p)] = append(synRows[e2eRowFlow(p)], p)
		}
	}
	synackReplies := map[uint32][]records.Reply{}
	for _, r := range replies {
		if r.Method == records.MethodSYNACK {
			synackReplies[r.UserID] = append(synackReplies[r.UserID], r)
		}
	}
	seqs := map[e2eFlowKey]uint32{}
	userIDs := map[uint32]e2eFlowKey{}
	for _, f := range flows {
		rows := synRows[f]
		if len(rows) != 1 {
			t.Errorf("raw log: %d SYN rows %s -> %s, want 1", len(rows), f.client, f.server)
			continue
		}
		p := rows[0]
		seqs[f] = p.Seq
		if !p.Probed || p.Method != records.MethodSYNACK {
			t.Errorf("raw log: SYN %s -> %s has probed=%t method=%q, want true, tcp-synack", f.client, f.server, p.Probed, p.Method)
		}
		if p.ProbeAck != p.Seq+1 {
			t.Errorf("raw log: SYN %s -> %s has probe anum %d, want seq+1 = %d", f.client, f.server, p.ProbeAck, p.Seq+1)
		}
		if p.NumProbes != 1 {
			t.Errorf("raw log: SYN %s -> %s has num probes %d, want 1", f.client, f.server, p.NumProbes)
		}
		if other, dup := userIDs[p.UserID]; dup {
			t.Errorf("raw log: userid %d of %s -> %s already used by %s -> %s", p.UserID, f.client, f.server, other.client, other.server)
		}
		userIDs[p.UserID] = f
		rs := synackReplies[p.UserID]
		if len(rs) != 1 {
			t.Errorf("reply log: %d tcp-synack rows with userid %d (%s -> %s), want 1", len(rs), p.UserID, f.client, f.server)
			continue
		}
		r := rs[0]
		if got := (e2eFlowKey{client: netip.AddrPortFrom(r.Dst, r.DstPort), server: netip.AddrPortFrom(r.Src, r.SrcPort)}); got != f {
			t.Errorf("reply log: userid %d is %s -> %s, want %s -> %s", p.UserID, got.server, got.client, f.server, f.client)
		}
		if r.NumProbes != 1 {
			t.Errorf("reply log: userid %d has num probes %d, want 1", p.UserID, r.NumProbes)
		}
	}
	return seqs
}

// TestSYNsAnsweredOnce sends SYNs to 60 address and port pairs of the IPv4
// prefix (ports 1 and 65535 included) with spoki's own probe and to a few
// more with hping3, and checks on the scanner's side that each got exactly
// one SYN-ACK acknowledging seq+1 and nothing else within 5 s, and in the
// logs that each SYN row was probed with tcp-synack and joined to one reply.
func TestSYNsAnsweredOnce(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "tcpdump", "hping3")
	tel := e2eStartTelescope(t, l)

	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	targets := e2eSYNTargets(t, lab.Prefix4, 60, 0x5b0e2e,
		ap("198.51.100.1:1"), ap("198.51.100.254:65535"), ap("198.51.100.80:1"), ap("198.51.100.80:65535"))
	// hping3 cross-check: fixed source ports and sequence numbers, targets
	// the probe does not use.
	type hpingTarget struct {
		target netip.AddrPort
		sport  uint16
		seq    uint32
	}
	hping := []hpingTarget{
		{ap("198.51.100.7:80"), 61001, 1000000},
		{ap("198.51.100.250:65535"), 61002, 4294967295}, // ack wraps to 0
		{ap("198.51.100.100:1"), 61003, 7},
	}
	for _, h := range hping {
		for _, tg := range targets {
			if tg == h.target {
				t.Fatalf("hping3 target %s is also a probe target", tg)
			}
		}
	}

	capt := e2eStartCapture(t, l, l.Scanner, l.ScannerIface, "tcp and net "+lab.Prefix4.String())
	wantSeq := map[e2eFlowKey]uint32{}
	var hpingFlows []e2eFlowKey
	for _, h := range hping {
		out, errOut, code := e2eExec(t, l, l.Scanner, e2eClientTimeout, nil, "hping3", "-S", "-c", "1",
			"-s", strconv.Itoa(int(h.sport)), "-M", strconv.FormatUint(uint64(h.seq), 10),
			"-p", strconv.Itoa(int(h.target.Port())), h.target.Addr().String())
		// hping3 prints the replies on standard output, the totals on
		// standard error.
		out += errOut
		if code != 0 || !strings.Contains(out, "flags=SA") || !strings.Contains(out, "1 packets received") {
			t.Errorf("hping3 to %s: exit %d, want 0 with one SA reply:\n%s", h.target, code, out)
		}
		f := e2eFlowKey{client: netip.AddrPortFrom(lab.ScannerAddr4, h.sport), server: h.target}
		hpingFlows = append(hpingFlows, f)
		wantSeq[f] = h.seq
	}
	// The probe listens 5 s after its last SYN: long enough for a
	// retransmitted SYN-ACK to any SYN, the hping3 ones sent before it
	// included, to show in the capture.
	res, code := e2eProbeSYN(t, l, targets, e2eSYNWait)
	flows := e2eCheckSYNProbe(t, targets, res, code, lab.ScannerAddr4)
	_, segs := capt.stop(t)
	all := append(append([]e2eFlowKey(nil), flows...), hpingFlows...)
	e2eCheckCapturedSYNACKs(t, segs, all, wantSeq)

	out := tel.stop(t)
	stats := e2eStats(t, out, "final")
	if got, want := e2eStatsValue(t, stats, "synacks_out"), uint64(len(all)); got != want {
		t.Errorf("final stats: synacks_out=%d, want %d (one per SYN)", got, want)
	}
	raw := e2eReadRawTCP(t, tel.logDir)
	replies := e2eReadReplies(t, tel.logDir)
	seqs := e2eCheckSYNRecords(t, raw, replies, all)
	for f, seq := range wantSeq {
		if got, ok := seqs[f]; ok && got != seq {
			t.Errorf("raw log: SYN %s -> %s has seq %d, want hping3's %d", f.client, f.server, got, seq)
		}
	}
}

// e2eSession finds the one session event of the flow from client to server
// (client port 0: any port) whose payload satisfies match.
func e2eSession(t *testing.T, events []lab.Event, what string, server netip.AddrPort, match func([]byte) bool) (lab.Event, bool) {
	t.Helper()
	var found []lab.Event
	for _, e := range events {
		if e.EventType == records.EventSession && e.Dest() == server && match(e.Payload) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: %d session events to %s with the client's payload, want 1", what, len(found), server)
		for _, e := range events {
			if e.EventType == records.EventSession {
				t.Logf("  session %s:%d -> %s payload %q", e.SrcIP, e.SrcPort, e.Dest(), e.Payload)
			}
		}
		return lab.Event{}, false
	}
	return found[0], true
}

// e2eCheckPayloadRecorded checks that the session event's payload is, byte
// for byte, the payload of the first data row of the same flow in the raw
// log.
func e2eCheckPayloadRecorded(t *testing.T, what string, raw []records.Packet, e lab.Event) {
	t.Helper()
	f := e2eFlowKey{client: netip.AddrPortFrom(e.SrcIP, e.SrcPort), server: e.Dest()}
	for _, p := range raw {
		if e2eRowFlow(p) != f || len(p.Payload) == 0 {
			continue
		}
		if !bytes.Equal(p.Payload, e.Payload) {
			t.Errorf("%s: raw log's first data row of %s -> %s has payload %q, session event %q", what, f.client, f.server, p.Payload, e.Payload)
		}
		if p.IsSYN() || p.Flags&records.FlagACK == 0 {
			t.Errorf("%s: data row of %s -> %s has flags %#x, want an ACK segment", what, f.client, f.server, p.Flags)
		}
		return
	}
	t.Errorf("%s: no raw-log row of %s -> %s carries a payload", what, f.client, f.server)
}

// e2eHTTPRequestFrom reports whether b is a curl GET / with Host host and
// User-Agent ua.
func e2eHTTPRequestFrom(host, ua string) func([]byte) bool {
	return func(b []byte) bool {
		return bytes.HasPrefix(b, []byte("GET / HTTP/1.1\r\nHost: "+host+"\r\n")) &&
			bytes.Contains(b, []byte("\r\nUser-Agent: "+ua+"\r\n")) &&
			bytes.HasSuffix(b, []byte("\r\n\r\n"))
	}
}

// e2eCurl runs curl from the scanner and checks that it got through the
// handshake and sent its request: the telescope resets (exit 56) or closes
// (52) afterwards.
func e2eCurl(t *testing.T, l *lab.Lab, url, ua string) {
	t.Helper()
	_, errOut, code := e2eExec(t, l, l.Scanner, e2eClientTimeout, nil, "curl", "-sS", "-g", "--noproxy", "*",
		"--max-time", "5", "-A", ua, url)
	if code != 56 && code != 52 && code != 0 {
		t.Errorf("curl %s: exit %d (%s), want 56 (reset after the request), 52 or 0", url, code, strings.TrimSpace(errOut))
	}
}

// e2eNC sends line with nc from the scanner (netcat-openbsd: -N shuts the
// socket down after stdin's EOF).
func e2eNC(t *testing.T, l *lab.Lab, host string, port uint16, line string) {
	t.Helper()
	_, _, code := e2eExec(t, l, l.Scanner, e2eClientTimeout, []byte(line), "nc", "-N", "-w", "3", host, strconv.Itoa(int(port)))
	if code < 0 {
		t.Errorf("nc %s %d: timed out", host, port)
	}
}

// TestKernelClientsPayloadRecorded runs curl, nc and openssl s_client from
// the scanner against the IPv4 prefix and checks that each one's first data
// segment is in the raw log and in a session event, byte for byte.
func TestKernelClientsPayloadRecorded(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl", "nc", "openssl")
	tel := e2eStartTelescope(t, l)
	// The handshakes below complete through the raw reply sockets.
	tel.checkReplies(t, "raw")
	tel.checkProcs(t)

	httpDst := netip.MustParseAddrPort("198.51.100.80:80")
	ncDst := netip.MustParseAddrPort("198.51.100.23:23")
	tlsDst := netip.MustParseAddrPort("198.51.100.43:443")
	const ua = "spoki-e2e/1"
	const line = "spoki e2e telnet line\r\n"

	e2eCurl(t, l, "http://198.51.100.80:80/", ua)
	e2eNC(t, l, ncDst.Addr().String(), ncDst.Port(), line)
	out, _, code := e2eExec(t, l, l.Scanner, e2eClientTimeout, []byte{}, "openssl", "s_client",
		"-connect", tlsDst.String(), "-servername", "example.test")
	if code < 0 || !strings.Contains(out, "CONNECTED(") {
		t.Errorf("openssl s_client: exit %d, want a TCP connection (CONNECTED) and a failed TLS handshake", code)
	}

	tel.stop(t)
	raw := e2eReadRawTCP(t, tel.logDir)
	events := e2eReadEvents(t, tel.logDir)

	checks := []struct {
		name  string
		dst   netip.AddrPort
		match func([]byte) bool
	}{
		{"curl", httpDst, e2eHTTPRequestFrom("198.51.100.80", ua)},
		{"nc", ncDst, func(b []byte) bool { return string(b) == line }},
		{"openssl", tlsDst, func(b []byte) bool {
			// A TLS handshake record with the ClientHello's SNI.
			return len(b) > 5 && b[0] == 0x16 && b[1] == 0x03 && bytes.Contains(b, []byte("example.test"))
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			e, ok := e2eSession(t, events, c.name, c.dst, c.match)
			if !ok {
				return
			}
			if e.SrcIP != lab.ScannerAddr4 {
				t.Errorf("session src_ip = %s, want %s", e.SrcIP, lab.ScannerAddr4)
			}
			if e.BytesToServer < int64(len(e.Payload)) {
				t.Errorf("session bytes_toserver = %d, want at least the payload's %d", e.BytesToServer, len(e.Payload))
			}
			e2eCheckPayloadRecorded(t, c.name, raw, e)
		})
	}
}

// TestIPv6 does over IPv6 what the IPv4 tests do: curl and nc to
// [2001:db8:5b0::80]:8080 recorded byte for byte, and SYNs to a few
// addresses of the /48 each answered exactly once.
func TestIPv6(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl", "nc", "tcpdump")
	tel := e2eStartTelescope(t, l)
	// The handshakes below complete through the raw reply sockets.
	tel.checkReplies(t, "raw")

	dst := netip.MustParseAddrPort("[2001:db8:5b0::80]:8080")
	const ua = "spoki-e2e/6"
	const line = "spoki e2e v6 line\n"
	e2eCurl(t, l, "http://[2001:db8:5b0::80]:8080/", ua)
	e2eNC(t, l, dst.Addr().String(), dst.Port(), line)

	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	targets := e2eSYNTargets(t, lab.Prefix6, 8, 0x5b06,
		ap("[2001:db8:5b0::1]:1"), ap("[2001:db8:5b0:ffff:ffff:ffff:ffff:ffff]:65535"),
		ap("[2001:db8:5b0::80]:443"), ap("[2001:db8:5b0:1234::5]:22"))
	capt := e2eStartCapture(t, l, l.Scanner, l.ScannerIface, "tcp and net "+lab.Prefix6.String()+" and not port 8080")
	res, code := e2eProbeSYN(t, l, targets, e2eSYNWait)
	flows := e2eCheckSYNProbe(t, targets, res, code, lab.ScannerAddr6)
	_, segs := capt.stop(t)
	e2eCheckCapturedSYNACKs(t, segs, flows, nil)

	tel.stop(t)
	raw := e2eReadRawTCP(t, tel.logDir)
	replies := e2eReadReplies(t, tel.logDir)
	events := e2eReadEvents(t, tel.logDir)
	e2eCheckSYNRecords(t, raw, replies, flows)

	checks := []struct {
		name  string
		match func([]byte) bool
	}{
		{"curl", e2eHTTPRequestFrom("[2001:db8:5b0::80]:8080", ua)},
		{"nc", func(b []byte) bool { return string(b) == line }},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			e, ok := e2eSession(t, events, c.name, dst, c.match)
			if !ok {
				return
			}
			if e.SrcIP != lab.ScannerAddr6 {
				t.Errorf("session src_ip = %s, want %s", e.SrcIP, lab.ScannerAddr6)
			}
			e2eCheckPayloadRecorded(t, c.name, raw, e)
		})
	}
}

// TestOutsidePrefixNoAnswer routes prefixes that are not the telescope's
// to its TUN by hand and checks that SYNs to them get no answer at all,
// while one inside still does, and that spoki counted them as outside.
func TestOutsidePrefixNoAnswer(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "tcpdump")
	tel := e2eStartTelescope(t, l)

	outside4 := netip.MustParsePrefix("203.0.113.0/24")
	outside6 := netip.MustParsePrefix("2001:db8:ffff::/48")
	for _, args := range [][]string{
		{"-n", l.Telescope, "route", "add", outside4.String(), "dev", l.TUN},
		{"-n", l.Telescope, "-6", "route", "add", outside6.String(), "dev", l.TUN},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	outside := []netip.AddrPort{ap("203.0.113.5:80"), ap("203.0.113.5:443"), ap("203.0.113.77:22"), ap("[2001:db8:ffff::5]:80")}
	control := ap("198.51.100.5:80")
	capt := e2eStartCapture(t, l, l.Scanner, l.ScannerIface,
		"src net "+outside4.String()+" or src net "+outside6.String())
	res, code := e2eProbeSYN(t, l, append(append([]netip.AddrPort(nil), outside...), control), 2*time.Second)
	if code == 0 {
		t.Errorf("spoki probe syn: exit 0, want non-zero: the outside targets must not be answered")
	}
	if len(res) != len(outside)+1 {
		t.Fatalf("spoki probe syn printed %d results, want %d", len(res), len(outside)+1)
	}
	for _, r := range res {
		want := 0
		if r.target == control {
			want = 1
		}
		if r.synacks != want {
			t.Errorf("SYN to %s: %d SYN-ACKs, want %d", r.target, r.synacks, want)
		}
	}
	lines, _ := capt.stop(t)
	for _, line := range lines {
		t.Errorf("capture: a packet from outside the telescope prefixes came back: %s", line)
	}

	out := tel.stop(t)
	stats := e2eStats(t, out, "final")
	// The kernel's own IPv6 multicast (MLD reports behind a hop-by-hop
	// header) to the TUN is outside the prefixes too: at least one count
	// per SYN sent outside, and exactly one raw TCP row each (below).
	if got, want := e2eStatsValue(t, stats, "drop_outside"), uint64(len(outside)); got < want {
		t.Errorf("final stats: drop_outside=%d, want at least %d (one per SYN sent outside)", got, want)
	}
	if got := e2eStatsValue(t, stats, "synacks_out"); got != 1 {
		t.Errorf("final stats: synacks_out=%d, want 1 (the control SYN only)", got)
	}
	outsideRows := 0
	for _, p := range e2eReadRawTCP(t, tel.logDir) {
		if outside4.Contains(p.Dst) || outside6.Contains(p.Dst) {
			outsideRows++
			if p.Probed || p.Method != records.MethodNone {
				t.Errorf("raw log: packet to %s has probed=%t method=%q, want not probed", p.Dst, p.Probed, p.Method)
			}
		}
	}
	if outsideRows != len(outside) {
		t.Errorf("raw log: %d TCP rows to outside addresses, want %d (one per SYN)", outsideRows, len(outside))
	}
	for _, r := range e2eReadReplies(t, tel.logDir) {
		if outside4.Contains(r.Src) || outside6.Contains(r.Src) {
			t.Errorf("reply log: a reply from outside the prefixes: %+v", r)
		}
	}
}

// e2eFlood runs `spoki probe flood` in the scanner namespace and returns
// the number of frames sent.
func e2eFlood(t *testing.T, l *lab.Lab, args ...string) uint64 {
	t.Helper()
	args = append([]string{"probe", "flood", "--iface", l.ScannerIface, "--dst-mac", l.TelescopeMAC.String()}, args...)
	out, _, code := e2eExec(t, l, l.Scanner, 90*time.Second, nil, labSpokiBin(t), args...)
	if code != 0 {
		t.Fatalf("spoki probe flood: exit %d", code)
	}
	for _, line := range strings.Split(out, "\n") {
		var sent, refused uint64
		var secs, pps float64
		if n, _ := fmt.Sscanf(line, "sent %d packets in %fs (%f pps), %d refused", &sent, &secs, &pps, &refused); n == 4 {
			return sent
		}
	}
	t.Fatalf("spoki probe flood: no result line in %q", out)
	return 0
}

// TestBadCookieAndBackscatterDropped floods the telescope with ACKs that
// carry bad cookies and with SYN-ACK and RST backscatter, all "from" the
// scanner's own address so that any reply would reach it, and checks that
// nothing comes back and that spoki counted every packet by its cause.
func TestBadCookieAndBackscatterDropped(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "tcpdump")
	tel := e2eStartTelescope(t, l)

	capt := e2eStartCapture(t, l, l.Scanner, l.ScannerIface,
		"src net "+lab.Prefix4.String()+" or src net "+lab.Prefix6.String())
	const count = 20000
	flood := func(kind string) uint64 {
		sent := e2eFlood(t, l, "--prefix", lab.Prefix4.String(), "--src", lab.ScannerAddr4.String()+"/32",
			"--kind", kind, "--count", strconv.Itoa(count), "--rate", "20000", "--duration", "10s")
		if sent < count*95/100 {
			t.Errorf("flood %s: sent %d of %d frames", kind, sent, count)
		}
		return sent
	}
	sentACK := flood("ack")
	sentBackscatter := flood("synack") + flood("rst")
	// Let the last frames through the TUN before counting.
	time.Sleep(time.Second)
	lines, _ := capt.stop(t)
	if len(lines) > 0 {
		t.Errorf("capture: %d packets came back from the telescope, want 0; first: %s", len(lines), lines[0])
	}

	out := tel.stop(t)
	stats := e2eStats(t, out, "final")
	check := func(key string, sent uint64) {
		got := e2eStatsValue(t, stats, key)
		if got < sent*95/100 || got > sent {
			t.Errorf("final stats: %s=%d, want between 95%% and 100%% of the %d sent (tun_dropped=%d)",
				key, got, sent, stats["tun_dropped"])
		}
	}
	check("drop_bad_cookie", sentACK)
	check("drop_backscatter", sentBackscatter)
	for _, key := range []string{"synacks_out", "handshakes", "sessions"} {
		if got := e2eStatsValue(t, stats, key); got != 0 {
			t.Errorf("final stats: %s=%d, want 0", key, got)
		}
	}
	if got := len(e2eReadReplies(t, tel.logDir)); got != 0 {
		t.Errorf("reply log: %d rows, want 0", got)
	}
}

// e2eCheckLogDir checks that every file of the log directory is complete
// and parses: CSV rows with records.ParseRawRow and ParseReplyRow under
// their exact headers, every event line a JSON object with an event_type.
// It returns the number of rows or lines by kind.
func e2eCheckLogDir(t *testing.T, dir string) map[e2eLogKind]int {
	t.Helper()
	counts := map[e2eLogKind]int{}
	headers := map[e2eLogKind]string{
		e2eRawTCP:  records.RawHeader,
		e2eRawUDP:  records.UDPRawHeader,
		e2eRawICMP: records.ICMPRawHeader,
		e2eReplies: records.ReplyHeader,
	}
	for kind, files := range e2eLogFiles(t, dir) {
		for _, name := range files {
			base := filepath.Base(name)
			lines := e2eReadLines(t, name)
			if kind == e2eEvents {
				for i, line := range lines {
					var ev map[string]any
					if err := json.Unmarshal([]byte(line), &ev); err != nil {
						t.Errorf("%s:%d: not JSON: %v: %q", base, i+1, err, line)
						continue
					}
					if et, _ := ev["event_type"].(string); et == "" {
						t.Errorf("%s:%d: no event_type: %q", base, i+1, line)
					}
					counts[kind]++
				}
				continue
			}
			if len(lines) == 0 {
				continue
			}
			if lines[0] != headers[kind] {
				t.Errorf("%s: header %q, want %q", base, lines[0], headers[kind])
			}
			for i, line := range lines[1:] {
				var err error
				if kind == e2eReplies {
					_, err = records.ParseReplyRow(line)
				} else {
					_, err = records.ParseRawRow(line)
				}
				if err != nil {
					t.Errorf("%s:%d: %v", base, i+2, err)
				}
				counts[kind]++
			}
		}
	}
	return counts
}

// TestSIGTERMMidTraffic stops spoki with SIGTERM during a paced SYN flood
// and HTTP requests and checks that it exits 0 at once, that every log file
// is complete and parses, and that the TUN and its routes are gone.
func TestSIGTERMMidTraffic(t *testing.T) {
	l := e2eNewLab(t, lab.Config{Sink: true}, "curl")
	tel := e2eStartTelescope(t, l)
	bin := labSpokiBin(t)

	flood, err := l.Start(l.Scanner, bin, "probe", "flood", "--iface", l.ScannerIface, "--dst-mac", l.TelescopeMAC.String(),
		"--prefix", lab.Prefix4.String(), "--kind", "syn", "--rate", "5000", "--duration", "8s")
	if err != nil {
		t.Fatalf("start flood: %v", err)
	}
	if err := flood.WaitFor("flooding", 5*time.Second); err != nil {
		t.Fatalf("flood: %v", err)
	}
	var curls []*lab.Process
	for i := range 4 {
		p, err := l.Start(l.Scanner, "curl", "-sS", "--noproxy", "*", "--max-time", "5", "-A", "spoki-e2e/term",
			fmt.Sprintf("http://198.51.100.%d:%d/", 80+i, 8000+i))
		if err != nil {
			t.Fatalf("start curl: %v", err)
		}
		curls = append(curls, p)
	}
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-flood.Done():
		t.Fatalf("the flood ended before SIGTERM: %v", flood.Err())
	default:
	}

	start := time.Now()
	out := tel.stop(t) // SIGTERM; asserts exit status 0
	took := time.Since(start)
	t.Logf("spoki exited %v after SIGTERM", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("spoki took %v to exit after SIGTERM, want under 5s", took.Round(time.Millisecond))
	}
	// The clients are ours: stop them by PID before looking at the files.
	_ = flood.Stop()
	for _, p := range curls {
		_ = p.Stop()
	}

	counts := e2eCheckLogDir(t, tel.logDir)
	if counts[e2eRawTCP] == 0 || counts[e2eReplies] == 0 || counts[e2eEvents] == 0 {
		t.Errorf("log rows by kind %v: want raw TCP, reply and event rows", counts)
	}
	stats := e2eStats(t, out, "final")
	if dropped := e2eStatsValue(t, stats, "records_dropped"); dropped == 0 {
		// Nothing lost on SIGTERM: every SYN-ACK sent has its reply row.
		synacks := 0
		for _, r := range e2eReadReplies(t, tel.logDir) {
			if r.Method == records.MethodSYNACK {
				synacks++
			}
		}
		if got := e2eStatsValue(t, stats, "synacks_out"); uint64(synacks) != got {
			t.Errorf("reply log has %d tcp-synack rows, final stats synacks_out=%d: records lost at SIGTERM", synacks, got)
		}
	} else {
		t.Logf("final stats: records_dropped=%d (counted under load)", dropped)
	}

	e2eCheckTUNGone(t, l)
}

// TestRunBadInvocations checks that `spoki run` with bad flags or a bad
// prefix exits non-zero with exactly one line on standard error and
// creates nothing, and that a TUN name already taken fails the same way
// without adding routes.
func TestRunBadInvocations(t *testing.T) {
	bin := labSpokiBin(t)
	// As root the invocations run in a lab's telescope namespace, so that
	// a spoki that wrongly went ahead could not touch the host's network.
	var l *lab.Lab
	if os.Geteuid() == 0 {
		l = e2eNewLab(t, lab.Config{})
	}
	run := func(t *testing.T, args ...string) (stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), e2eClientTimeout)
		defer cancel()
		var cmd *exec.Cmd
		if l != nil {
			cmd = l.Command(ctx, l.Telescope, bin, append([]string{"run"}, args...)...)
		} else {
			cmd = exec.CommandContext(ctx, bin, append([]string{"run"}, args...)...)
		}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run spoki: %v", err)
		}
		if o.Len() > 0 {
			t.Errorf("standard output %q, want nothing", o.String())
		}
		return e.String(), code
	}
	checkOneLine := func(t *testing.T, stderr string, code int, want string) {
		t.Helper()
		if code == 0 {
			t.Errorf("exit 0, want non-zero")
		}
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if len(lines) != 1 || strings.TrimSpace(lines[0]) == "" {
			t.Errorf("standard error has %d lines, want exactly one:\n%s", len(lines), stderr)
		}
		if !strings.Contains(stderr, want) {
			t.Errorf("standard error %q does not mention %q", stderr, want)
		}
	}

	tests := []struct {
		name string
		args []string
		want string // a part of the error line
	}{
		{"no prefix", nil, "prefix"},
		{"host bits", []string{"--prefix", "198.51.100.1/24"}, "198.51.100.1/24"},
		{"not a prefix", []string{"--prefix", "nonsense"}, "nonsense"},
		{"second prefix bad", []string{"--prefix", "198.51.100.0/24", "--prefix", "2001:db8:5b0::1/48"}, "2001:db8:5b0::1/48"},
		{"queues zero", []string{"--prefix", "198.51.100.0/24", "--queues", "0"}, "queues"},
		{"queues too many", []string{"--prefix", "198.51.100.0/24", "--queues", "65"}, "queues"},
		{"queues not a number", []string{"--prefix", "198.51.100.0/24", "--queues", "abc"}, "queues"},
		{"unknown flag", []string{"--prefix", "198.51.100.0/24", "--no-such-flag"}, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logDir := filepath.Join(t.TempDir(), "logs")
			tun := "e2ebad0"
			if l != nil {
				tun = l.TUN
			}
			stderr, code := run(t, append([]string{"--tun", tun, "--log-dir", logDir}, tc.args...)...)
			checkOneLine(t, stderr, code, tc.want)
			if _, err := os.Stat(logDir); err == nil {
				t.Errorf("log dir %s was created by a bad invocation", logDir)
			}
			if l != nil {
				if out, err := exec.Command("ip", "-n", l.Telescope, "link", "show", "dev", tun).CombinedOutput(); err == nil {
					t.Errorf("TUN %s created by a bad invocation:\n%s", tun, out)
				}
			}
		})
	}

	t.Run("tun exists", func(t *testing.T) {
		if l == nil {
			labRequireRoot(t)
		}
		labRequireTools(t)
		if out, err := exec.Command("ip", "-n", l.Telescope, "tuntap", "add", "dev", l.TUN, "mode", "tun").CombinedOutput(); err != nil {
			t.Fatalf("create the TUN first: %v: %s", err, out)
		}
		logDir := filepath.Join(t.TempDir(), "logs")
		stderr, code := run(t, "--prefix", lab.Prefix4.String(), "--prefix", lab.Prefix6.String(),
			"--tun", l.TUN, "--log-dir", logDir, "--tag", e2eTag)
		checkOneLine(t, stderr, code, l.TUN)
		for _, fam := range []struct {
			flag   string
			prefix netip.Prefix
		}{{"-4", lab.Prefix4}, {"-6", lab.Prefix6}} {
			out, err := exec.Command("ip", "-n", l.Telescope, fam.flag, "route", "show").CombinedOutput()
			if err != nil {
				t.Fatalf("ip route: %v: %s", err, out)
			}
			if strings.Contains(string(out), fam.prefix.String()) {
				t.Errorf("route to %s added by the failed start:\n%s", fam.prefix, out)
			}
		}
		// The TUN is the test's own: it must still be there, untouched.
		if out, err := exec.Command("ip", "-n", l.Telescope, "link", "show", "dev", l.TUN).CombinedOutput(); err != nil {
			t.Errorf("the existing TUN %s was removed: %v: %s", l.TUN, err, out)
		}
		if entries, err := os.ReadDir(logDir); err == nil {
			for _, e := range entries {
				t.Errorf("file %s left in the log dir by the failed start", e.Name())
			}
			if len(entries) == 0 {
				t.Logf("note: the failed start left an empty log dir %s", logDir)
			}
		}
	})
}

// TestNewPortsFirstPayload connects to many ports that spoki has not seen
// yet, concurrently, and checks that every client's first data segment is
// in its session event. The first handshake on a port makes spoki create
// the port's listener while, with a multi-queue TUN, the client's data
// segment may be read by another queue: it must not overtake the handshake
// and be lost (or reset) on the way.
func TestNewPortsFirstPayload(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "nc")
	tel := e2eStartTelescope(t, l)

	const conns = 40
	addr := netip.MustParseAddr("198.51.100.90")
	lines := map[uint16]string{}
	for i := range conns {
		port := uint16(20000 + i)
		line := fmt.Sprintf("spoki e2e new port %d\r\n", port)
		lines[port] = line
		e2eNC(t, l, addr.String(), port, line)
	}

	tel.stop(t)
	events := e2eReadEvents(t, tel.logDir)
	got := map[uint16][]byte{}
	for _, e := range events {
		if e.EventType == records.EventSession && e.DestIP == addr {
			got[e.DestPort] = e.Payload
		}
	}
	lost := 0
	for port, line := range lines {
		p, ok := got[port]
		switch {
		case !ok:
			t.Errorf("no session event for port %d", port)
		case string(p) != line:
			lost++
			t.Errorf("session on new port %d has payload %q, want the client's %q", port, p, line)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d first payloads lost on new ports", lost, conns)
	}
}
