//go:build linux

package test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
)

// e2eReadEventMaps returns the events of type typ as generic JSON objects.
func e2eReadEventMaps(t *testing.T, dir, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, name := range e2eLogFiles(t, dir)[e2eEvents] {
		for _, line := range e2eReadLines(t, name) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("%s: %v: %q", filepath.Base(name), err, line)
				continue
			}
			if m["event_type"] == typ {
				out = append(out, m)
			}
		}
	}
	return out
}

// TestICMPEchoLab: iputils ping, over IPv4 and IPv6, gets its three echo
// replies from telescope addresses; every request is in the raw ICMP log
// probed with icmp-echo-reply, has an icmp event with its id and seq, and
// is counted.
func TestICMPEchoLab(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "ping")
	tel := e2eStartTelescope(t, l)
	targets := []string{"198.51.100.10", "2001:db8:5b0::10"}
	for _, target := range targets {
		out, _, code := e2eExec(t, l, l.Scanner, 20*time.Second, nil, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "56", target)
		if code != 0 || !strings.Contains(out, "3 packets transmitted, 3 received") {
			t.Errorf("ping %s: exit %d, want 3 of 3 received:\n%s", target, code, out)
		}
		if strings.Contains(out, "truncated") || strings.Contains(out, "DUP") || strings.Contains(out, "wrong data") {
			t.Errorf("ping %s: replies not echoed faithfully:\n%s", target, out)
		}
	}
	stats := e2eStats(t, tel.stop(t), "final")
	if got := e2eStatsValue(t, stats, "icmp_echo_replies"); got != 6 {
		t.Errorf("final stats: icmp_echo_replies=%d, want 6", got)
	}
	probed := map[string]int{}
	for _, p := range e2eReadRows(t, tel.logDir, e2eRawICMP, records.ICMPRawHeader, records.ParseRawRow) {
		if p.Proto == records.ProtoICMP && p.Probed && p.Method == records.MethodICMPEchoReply && p.UserID != 0 &&
			(p.Src == lab.ScannerAddr4 || p.Src == lab.ScannerAddr6) && len(p.Payload) == 56 {
			probed[p.Dst.String()]++
		}
	}
	for _, target := range targets {
		if probed[target] != 3 {
			t.Errorf("raw ICMP log: %d probed echo requests with 56 bytes of data to %s, want 3", probed[target], target)
		}
	}
	events := 0
	for _, e := range e2eReadEventMaps(t, tel.logDir, records.EventICMP) {
		icmp, _ := e["icmp"].(map[string]any)
		if e["probed"] == true && icmp != nil && icmp["id"] != nil && icmp["seq"] != nil {
			events++
		}
	}
	if events != 6 {
		t.Errorf("event log: %d probed icmp events with id and seq, want 6", events)
	}
}

// TestUDPServicesLab: dig gets REFUSED over IPv4 and IPv6, sntp gets a
// time, snmpget (v1 and v2c) noSuchName, nmap's UDP scan sees 53, 123,
// 137, 161 and 1900 open (its probes are answered) and 9 (no service) not
// open, netcat's SIP OPTIONS and memcached stats are answered, and every
// probe is in the raw UDP log and has a udp event with the service's
// fields.
func TestUDPServicesLab(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "dig", "sntp", "nmap", "nc", "snmpget")
	tel := e2eStartTelescope(t, l)
	for _, target := range []string{"198.51.100.53", "2001:db8:5b0::53"} {
		out, _, code := e2eExec(t, l, l.Scanner, 20*time.Second, nil, "dig", "@"+target, "example.com", "A", "+tries=1", "+time=3")
		if w := e2eWords(out); code != 0 || !strings.Contains(w, "status: REFUSED") || !strings.Contains(w, "QUERY: 1, ANSWER: 0,") {
			t.Errorf("dig @%s: exit %d, want a REFUSED answer with the question and no record:\n%s", target, code, out)
		}
	}
	out, errOut, code := e2eExec(t, l, l.Scanner, 30*time.Second, nil, "sntp", "-t", "3", "198.51.100.123")
	if code != 0 || !strings.Contains(out+errOut, "198.51.100.123") || strings.Contains(out+errOut, "no UCST response") {
		t.Errorf("sntp: exit %d, want an answer from 198.51.100.123:\n%s%s", code, out, errOut)
	}
	out, _, code = e2eExec(t, l, l.Scanner, 90*time.Second, nil, "nmap", "-n", "-Pn", "-sU", "-p", "9,53,123,137,161,1900,5060,11211", "--max-retries", "1", "198.51.100.7")
	words := e2eWords(out)
	// nmap 7.93 sends an empty datagram to 5060 (no SIP payload) and a
	// 17-byte memcached `version`, whose answer (at least 19 bytes) would
	// be longer: neither is answered, and netcat checks those two below.
	for _, port := range []string{"53", "123", "137", "161", "1900"} {
		if !strings.Contains(words, port+"/udp open ") {
			t.Errorf("nmap -sU: port %s not open:\n%s", port, out)
		}
	}
	if code != 0 || strings.Contains(words, " 9/udp open ") {
		t.Errorf("nmap -sU: exit %d, 9/udp must not be open:\n%s", code, out)
	}
	// snmpget, v1 and v2c: the agent answers noSuchName with the request's
	// community and id (the tool matches its request id, or it times out).
	for _, v := range []string{"1", "2c"} {
		out, errOut, _ := e2eExec(t, l, l.Scanner, 20*time.Second, nil, "snmpget", "-v", v, "-c", "public", "-r", "0", "-t", "3",
			"198.51.100.161", "1.3.6.1.2.1.1.1.0")
		if w := e2eWords(out + errOut); !strings.Contains(w, "noSuchName") || strings.Contains(w, "Timeout") {
			t.Errorf("snmpget -v %s: want a noSuchName answer:\n%s%s", v, out, errOut)
		}
	}
	for _, c := range []struct {
		port, req, want string
	}{
		{"5060", "OPTIONS sip:100@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK-1;rport\r\n" +
			"From: <sip:100@192.0.2.2>;tag=1\r\nTo: <sip:100@198.51.100.7>\r\nCall-ID: 42\r\nCSeq: 1 OPTIONS\r\n" +
			"Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n", "SIP/2.0 200 OK\r\n"},
		{"11211", "\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n", "END\r\n"},
	} {
		out, _, _ := e2eExec(t, l, l.Scanner, 10*time.Second, []byte(c.req), "nc", "-u", "-w", "2", "198.51.100.7", c.port)
		if !strings.Contains(out, c.want) || len(out) > len(c.req) {
			t.Errorf("nc -u to %s: answer %q, want %q and no more bytes than the %d sent", c.port, out, c.want, len(c.req))
		}
	}
	stats := e2eStats(t, tel.stop(t), "final")
	replies := e2eStatsValue(t, stats, "udp_replies")
	if replies < 12 { // two digs, sntp, nmap's five probes, two snmpgets, the two of netcat
		t.Errorf("final stats: udp_replies=%d, want at least 12", replies)
	}
	if got := e2eStatsValue(t, stats, "drop_udp_too_large"); got == 0 {
		t.Errorf("final stats: drop_udp_too_large=0, want nmap's memcached version counted")
	}
	probed := 0
	for _, p := range e2eReadRows(t, tel.logDir, e2eRawUDP, records.UDPRawHeader, records.ParseRawRow) {
		if p.Probed {
			if p.Method != records.MethodUDPReply || p.UserID == 0 {
				t.Errorf("raw UDP row %+v: probed with method %v user id %d", p, p.Method, p.UserID)
			}
			probed++
		}
	}
	if uint64(probed) != replies {
		t.Errorf("raw UDP log: %d probed rows, want udp_replies=%d", probed, replies)
	}
	services := map[string]int{}
	qname := false
	for _, e := range e2eReadEventMaps(t, tel.logDir, records.EventUDP) {
		svc, _ := e["service"].(string)
		if e["probed"] == true {
			services[svc]++
		}
		if d, ok := e["dns"].(map[string]any); ok && d["qname"] == "example.com" && d["qtype_name"] == "A" {
			qname = true
		}
	}
	for _, svc := range []string{"dns", "ntp", "snmp", "netbios-ns", "ssdp", "sip", "memcached"} {
		if services[svc] == 0 {
			t.Errorf("event log: no answered udp event of %s (%v)", svc, services)
		}
	}
	if !qname {
		t.Errorf("event log: no dns fields with dig's question")
	}
}

// TestReplyFloodLab floods the telescope with echo requests and DNS
// queries spoofed from four random sources of the lab's flood range (routed to
// the sink namespace, where the replies are captured) and from the
// scanner: each source must get its burst and at most the refill of the
// run, whatever it sends, and every request must be recorded.
func TestReplyFloodLab(t *testing.T) {
	l := e2eNewLab(t, lab.Config{Sink: true}, "hping3", "tcpdump")
	const (
		burst = 50
		rate  = 1
		n     = 300
	)
	tel := e2eStartTelescope(t, l, "--icmp-burst", strconv.Itoa(burst), "--icmp-rate", strconv.Itoa(rate),
		"--udp-burst", strconv.Itoa(burst), "--udp-rate", strconv.Itoa(rate))
	query := filepath.Join(t.TempDir(), "query")
	if err := os.WriteFile(query, dnsQuery(0x5151, "example.com"), 0o644); err != nil {
		t.Fatal(err)
	}
	qlen, _ := os.Stat(query)
	capt := e2eStartCapture(t, l, l.Sink, l.SinkIface, "(icmp or udp) and src net "+lab.Prefix4.String())
	// Four random sources of the flood range, each a spoofed victim.
	base := lab.FloodSrc4.Addr().As4()
	sources := []netip.Addr{}
	for _, o := range rand.Perm(254)[:4] {
		b := base
		b[3] = byte(o + 1)
		sources = append(sources, netip.AddrFrom4(b))
	}
	start := time.Now()
	for i, src := range sources {
		target := fmt.Sprintf("198.51.100.%d", 30+i)
		for _, args := range [][]string{
			{"-1", "-c", strconv.Itoa(n), "-i", "u1000", "-a", src.String(), target},
			{"-2", "-p", "53", "-E", query, "-d", strconv.Itoa(int(qlen.Size())), "-c", strconv.Itoa(n), "-i", "u1000", "-a", src.String(), target},
		} {
			if _, errOut, code := e2eExec(t, l, l.Scanner, 60*time.Second, nil, "hping3", args...); code < 0 {
				t.Fatalf("hping3 %v did not finish: %s", args, errOut)
			}
		}
	}
	elapsed := time.Since(start)
	lines, _ := capt.stop(t)
	maxRefill := int(elapsed.Seconds()*rate) + 1
	for _, src := range sources {
		var echo, dns int
		for _, line := range lines {
			if !strings.Contains(line, " > "+src.String()+".") && !strings.Contains(line, " > "+src.String()+":") {
				continue
			}
			switch {
			case strings.Contains(line, "ICMP echo reply"):
				echo++
			case strings.Contains(line, ".53 > ") && strings.Contains(line, "Refused"):
				dns++
			}
		}
		for _, c := range []struct {
			what string
			got  int
		}{{"echo replies", echo}, {"DNS answers", dns}} {
			if c.got < burst || c.got > burst+maxRefill {
				t.Errorf("%s: %d %s for %d requests, want the burst %d and at most %d refilled in %v",
					src, c.got, c.what, n, burst, maxRefill, elapsed.Round(time.Millisecond))
			}
		}
	}
	stats := e2eStats(t, tel.stop(t), "final")
	icmpAns, icmpRate := e2eStatsValue(t, stats, "icmp_echo_replies"), e2eStatsValue(t, stats, "drop_icmp_rate")
	udpAns, udpRate := e2eStatsValue(t, stats, "udp_replies"), e2eStatsValue(t, stats, "drop_udp_rate")
	k := uint64(len(sources))
	if icmpAns+icmpRate != k*n || udpAns+udpRate != k*n {
		t.Errorf("final stats: icmp %d answered + %d rate-limited, udp %d + %d, want %d each (tun_dropped=%d)",
			icmpAns, icmpRate, udpAns, udpRate, k*n, stats["tun_dropped"])
	}
	if icmpAns > k*uint64(burst+maxRefill) || udpAns > k*uint64(burst+maxRefill) {
		t.Errorf("final stats: %d echo replies and %d UDP answers, want at most %d each", icmpAns, udpAns, k*uint64(burst+maxRefill))
	}
	rows := 0
	for _, p := range e2eReadRows(t, tel.logDir, e2eRawUDP, records.UDPRawHeader, records.ParseRawRow) {
		if p.DstPort == 53 && lab.FloodSrc4.Contains(p.Src) {
			rows++
		}
	}
	if rows != len(sources)*n {
		t.Errorf("raw UDP log: %d rows of the flood, want %d, answered or not", rows, len(sources)*n)
	}
}

// e2eWords is s with every run of white space made one space.
func e2eWords(s string) string { return strings.Join(strings.Fields(s), " ") }

// dnsQuery is a DNS query for name's A record with RD set.
func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, label := range strings.Split(name, ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1)
}
