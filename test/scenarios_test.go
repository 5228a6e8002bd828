package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/scenarios"
)

// scnTimeout bounds one `spoki scenario` command.
const scnTimeout = 90 * time.Second

// scnDir is the built-in scenarios' directory, from the test's directory.
const scnDir = "../scenarios"

// TestScenarios runs every built-in scenario file, one command each, from
// the lab's scanner namespace against one live telescope. The runner/
// scenarios must fail with the message their want-fail comment names: the
// command reports them XFAIL and exits 0, or XPASS and exits 1.
func TestScenarios(t *testing.T) {
	l := e2eNewLab(t, lab.Config{})
	tel := e2eStartTelescope(t, l)
	bin := labSpokiBin(t)
	for _, name := range scenarios.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			s, err := scenarios.ParseFile(scenarios.Builtin(), name)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if len(s.Telescope) > 0 {
				// TestConnectionEndings runs it on a telescope started
				// with its flags.
				return
			}
			out, _, code := e2eExec(t, l, l.Scanner, scnTimeout, nil, bin, "scenario", "run",
				"--netns", l.Scanner, "--log-dir", tel.logDir, "--tag", e2eTag, filepath.Join(scnDir, name))
			if code != 0 {
				t.Fatalf("spoki scenario run %s: exit %d, want 0", name, code)
			}
			if s.WantFail != "" {
				if !strings.Contains(out, "--- XFAIL") || !strings.Contains(out, s.WantFail) {
					t.Errorf("%s must fail with %q; output:\n%s", name, s.WantFail, out)
				}
				return
			}
			if !strings.Contains(out, "--- PASS") {
				t.Errorf("no --- PASS line in:\n%s", out)
			}
		})
	}
	tel.stop(t)
	scnCheckNoLeftovers(t, l.Scanner)
}

// scnCheckNoLeftovers checks that the runner removed the scenario source
// addresses and the policy rules from the scanner namespace.
func scnCheckNoLeftovers(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{{"-4", "rule"}, {"-6", "rule"}, {"addr"}} {
		out, err := scnIPShow(ns, args...)
		if err != nil {
			t.Errorf("ip %v: %v", args, err)
			continue
		}
		if strings.Contains(out, "192.0.2.100") || strings.Contains(out, "2001:db8:1::100") || strings.Contains(out, "5050") {
			t.Errorf("ip %v in %s still shows the scenario set-up:\n%s", args, ns, out)
		}
	}
}

// scnIPShow runs `ip -n NS ARGS... show` and returns its output.
func scnIPShow(ns string, args ...string) (string, error) {
	cmd := append([]string{"-n", ns}, args...)
	cmd = append(cmd, "show")
	out, err := scnOutput("ip", cmd...)
	return string(out), err
}

// TestScenarioSyntaxError checks that a broken file runs nothing and names
// its line.
func TestScenarioSyntaxError(t *testing.T) {
	labRequireRoot(t)
	bin := labSpokiBin(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "broken.pkt")
	if err := os.WriteFile(f, []byte("src 192.0.2.100\ndst 198.51.100.7:80\n0 > SYN 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := scnCombined(bin, "scenario", "run", f)
	if err == nil || !strings.Contains(string(out), "broken.pkt:3: bad flags \"SYN\"") {
		t.Errorf("spoki scenario run broken.pkt = %v, want a failure naming line 3:\n%s", err, out)
	}
	if strings.Contains(string(out), "# lab ") {
		t.Errorf("a syntax error must stop before building a lab:\n%s", out)
	}
}

// TestScenarioOwnLab runs a scenario without --netns: the command builds
// its own lab and telescope and removes them.
func TestScenarioOwnLab(t *testing.T) {
	labRequireRoot(t)
	labRequireTools(t)
	bin := labSpokiBin(t)
	out, err := scnCombined(bin, "scenario", "run", filepath.Join(scnDir, "scanners/zmap-syn.pkt"))
	t.Logf("output:\n%s", out)
	if err != nil || !strings.Contains(string(out), "PASS: 1 scenarios") {
		t.Fatalf("spoki scenario run (own lab) = %v, want a pass", err)
	}
	m := regexp.MustCompile(`# lab (\S+):`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no lab line in the output")
	}
	for _, suffix := range []string{"-tel", "-scan"} {
		if _, err := os.Stat(filepath.Join("/run/netns", string(m[1])+suffix)); err == nil {
			t.Errorf("namespace %s%s still exists", m[1], suffix)
		}
	}
}

// TestScenarioReplay replays the client side of a small capture (a GET on
// 203.0.113.80:80), written as pcap and as pcapng, and checks that the
// telescope answered each at the rewritten address, 198.51.100.80, and
// recorded the request.
func TestScenarioReplay(t *testing.T) {
	for _, format := range []string{"pcap", "pcapng"} {
		t.Run(format, func(t *testing.T) { scnReplay(t, format) })
	}
}

// scnReplay is TestScenarioReplay with a capture in format.
func scnReplay(t *testing.T, format string) {
	l := e2eNewLab(t, lab.Config{})
	tel := e2eStartTelescope(t, l)
	bin := labSpokiBin(t)
	pcap := filepath.Join(t.TempDir(), "get."+format)
	scnWritePcap(t, pcap, format == "pcapng")
	out, _, code := e2eExec(t, l, l.Scanner, scnTimeout, nil, bin, "scenario", "replay",
		"--netns", l.Scanner, "--log-dir", tel.logDir, pcap)
	if code != 0 || !strings.Contains(out, "ok   conn 1 192.0.2.100:51000 > 198.51.100.80:80") {
		t.Fatalf("replay of the %s: exit %d, want 0 and conn 1 answered:\n%s", format, code, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, e := range e2eReadEvents(t, tel.logDir) {
			if e.EventType == "session" && e.Dest().String() == "198.51.100.80:80" && strings.HasPrefix(string(e.Payload), "GET /replayed") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session event with the replayed request at 198.51.100.80:80")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// scnWritePcap writes a classic pcap (raw IPv4 link type; by hand) or,
// with ng, a pcapng (pcapgo's NgWriter) of a client 192.0.2.50:51000
// talking to a server 203.0.113.80:80: SYN, SYN-ACK, ACK, GET, built with
// gopacket's layers.
func scnWritePcap(t *testing.T, name string, ng bool) {
	t.Helper()
	client, server := net.IP{192, 0, 2, 50}, net.IP{203, 0, 113, 80}
	seg := func(fromClient bool, syn, ack bool, seq, ackn uint32, payload string) []byte {
		src, dst, sport, dport := client, server, 51000, 80
		if !fromClient {
			src, dst, sport, dport = server, client, 80, 51000
		}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 7, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ackn, SYN: syn, ACK: ack, PSH: payload != "", Window: 64240}
		if syn {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	get := "GET /replayed HTTP/1.0\r\n\r\n"
	pkts := [][]byte{
		seg(true, true, false, 1000, 0, ""),
		seg(false, true, true, 9000, 1001, ""),
		seg(true, false, true, 1001, 9001, ""),
		seg(true, false, true, 1001, 9001, get),
	}
	if ng {
		var file bytes.Buffer
		w, err := pcapgo.NewNgWriter(&file, layers.LinkTypeRaw)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pkts {
			ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*10_000_000), CaptureLength: len(p), Length: len(p)}
			if err := w.WritePacket(ci, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(w.Flush(), os.WriteFile(name, file.Bytes(), 0o644)); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The pcap file format: a 24-byte header (magic, version 2.4, snaplen,
	// link type 101 = raw IP), then a 16-byte header per record.
	var file []byte
	le := binary.LittleEndian
	file = le.AppendUint32(file, 0xa1b2c3d4)
	file = le.AppendUint16(file, 2)
	file = le.AppendUint16(file, 4)
	file = le.AppendUint32(file, 0)
	file = le.AppendUint32(file, 0)
	file = le.AppendUint32(file, 65535)
	file = le.AppendUint32(file, uint32(layers.LinkTypeRaw))
	for i, p := range pkts {
		file = le.AppendUint32(file, 1700000000)
		file = le.AppendUint32(file, uint32(i*10000))
		file = le.AppendUint32(file, uint32(len(p)))
		file = le.AppendUint32(file, uint32(len(p)))
		file = append(file, p...)
	}
	if err := os.WriteFile(name, file, 0o644); err != nil {
		t.Fatal(err)
	}
}

// scnOutput runs a command and returns its standard output.
func scnOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).Output()
}

// scnCombined runs a command, bounded by scnTimeout, and returns its
// combined output.
func scnCombined(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scnTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	return cmd.CombinedOutput()
}
