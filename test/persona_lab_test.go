package test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/netstack"
)

// e2ePersonaTargets are the lab addresses of each persona: one telescope
// runs them all, plain by --persona and the others by --persona-prefix.
var e2ePersonaTargets = []struct {
	persona *netstack.Persona
	prefix  netip.Prefix
	addr    netip.Addr
}{
	{netstack.PersonaPlain, netip.MustParsePrefix("198.51.100.192/26"), netip.MustParseAddr("198.51.100.200")},
	{netstack.PersonaLinux, netip.MustParsePrefix("198.51.100.0/26"), netip.MustParseAddr("198.51.100.10")},
	{netstack.PersonaWindows, netip.MustParsePrefix("198.51.100.64/26"), netip.MustParseAddr("198.51.100.70")},
	{netstack.PersonaEmbedded, netip.MustParsePrefix("198.51.100.128/26"), netip.MustParseAddr("198.51.100.130")},
}

// e2eSeg is one TCP segment of a capture, decoded by gopacket.
type e2eSeg struct {
	src, dst netip.AddrPort
	ttl      uint8
	df       bool
	tcp      *layers.TCP
}

// e2eReadPcap decodes the TCP/IPv4 segments of a pcap file (tcpdump -w:
// the classic format, little-endian as tcpdump writes it here, Ethernet
// frames of the veth).
func e2eReadPcap(t *testing.T, name string) []e2eSeg {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("capture %s: not a little-endian pcap file", name)
	}
	if lt := binary.LittleEndian.Uint32(data[20:]); lt != uint32(layers.LinkTypeEthernet) {
		t.Fatalf("capture %s: link type %d, want Ethernet", name, lt)
	}
	var segs []e2eSeg
	for off := 24; off+16 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off+8:]))
		off += 16
		if off+n > len(data) {
			break
		}
		pkt := gopacket.NewPacket(data[off:off+n], layers.LayerTypeEthernet, gopacket.Default)
		off += n
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			continue
		}
		tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		segs = append(segs, e2eSeg{
			src: netip.AddrPortFrom(src, uint16(tcp.SrcPort)), dst: netip.AddrPortFrom(dst, uint16(tcp.DstPort)),
			ttl: ip.TTL, df: ip.Flags&layers.IPv4DontFragment != 0, tcp: tcp,
		})
	}
	return segs
}

// e2eP0fOptions writes TCP options in p0f's notation.
func e2eP0fOptions(opts []layers.TCPOption) string {
	names := map[layers.TCPOptionKind]string{
		layers.TCPOptionKindMSS: "mss", layers.TCPOptionKindNop: "nop", layers.TCPOptionKindWindowScale: "ws",
		layers.TCPOptionKindSACKPermitted: "sok", layers.TCPOptionKindTimestamps: "ts", layers.TCPOptionKindEndList: "eol",
	}
	var s []string
	for _, o := range opts {
		n, ok := names[o.OptionType]
		if !ok {
			n = fmt.Sprint(o.OptionType)
		}
		s = append(s, n)
	}
	return strings.Join(s, ",")
}

// TestPersonasLab runs one telescope with the four personas on four parts
// of the IPv4 prefix. For each, curl and nc complete handshakes and their
// first payloads are recorded; a capture on the scanner's side (tcpdump,
// decoded with gopacket) shows the persona's SYN-ACK options, window,
// window scale and TTL (less the telescope host's hop), and the persona's
// TTL and DF on gVisor's segments too. Then nmap -O, bounded, guesses each
// persona's OS; the guesses are logged (README, "SYN-ACK personas").
func TestPersonasLab(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl", "nc", "tcpdump", "nmap")
	args := []string{"--persona", "plain"}
	for _, p := range e2ePersonaTargets[1:] {
		args = append(args, "--persona-prefix", p.prefix.String()+"="+p.persona.Name)
	}
	tel := e2eStartTelescope(t, l, args...)

	pcap := filepath.Join(t.TempDir(), "scanner.pcap")
	capt, err := l.Start(l.Scanner, "tcpdump", "-n", "-U", "--immediate-mode", "-i", l.ScannerIface, "-w", pcap, "tcp")
	if err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	t.Cleanup(func() { _ = capt.Stop() })
	if err := capt.WaitFor("listening on", 10*time.Second); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}

	const ua = "spoki-persona/1"
	for _, p := range e2ePersonaTargets {
		e2eCurl(t, l, "http://"+p.addr.String()+":80/", ua)
		e2eNC(t, l, p.addr.String(), 23, "persona "+p.persona.Name+"\r\n")
	}
	time.Sleep(300 * time.Millisecond)
	_ = capt.Stop()
	segs := e2eReadPcap(t, pcap)

	tel.stop(t)
	raw := e2eReadRawTCP(t, tel.logDir)
	events := e2eReadEvents(t, tel.logDir)

	// The hops between the telescope's TUN and the scanner: the plain
	// persona's SYN-ACKs leave with TTL 64.
	hops := -1
	for _, s := range segs {
		if s.src.Addr() == e2ePersonaTargets[0].addr && s.tcp.SYN && s.tcp.ACK {
			hops = int(netstack.PersonaPlain.TTL) - int(s.ttl)
		}
	}
	if hops < 0 || hops > 4 {
		t.Fatalf("plain SYN-ACK TTL: %d hops, want 0-4 (no SYN-ACK captured?)", hops)
	}
	for _, p := range e2ePersonaTargets {
		t.Run(p.persona.Name, func(t *testing.T) {
			for _, c := range []struct {
				name  string
				dst   netip.AddrPort
				match func([]byte) bool
			}{
				{"curl", netip.AddrPortFrom(p.addr, 80), e2eHTTPRequestFrom(p.addr.String(), ua)},
				{"nc", netip.AddrPortFrom(p.addr, 23), func(b []byte) bool { return string(b) == "persona "+p.persona.Name+"\r\n" }},
			} {
				if e, ok := e2eSession(t, events, c.name, c.dst, c.match); ok {
					e2eCheckPayloadRecorded(t, c.name, raw, e)
				}
			}
			var synacks, gvisor int
			for _, s := range segs {
				if s.src.Addr() != p.addr {
					continue
				}
				if len(s.tcp.Payload) > 0 {
					gvisor++
				}
				if p.persona == netstack.PersonaPlain && !(s.tcp.SYN && s.tcp.ACK) {
					continue // plain leaves gVisor's segments as gVisor writes them
				}
				if want := int(p.persona.TTL) - hops; int(s.ttl) != want {
					t.Errorf("%s -> %s flags %v: TTL %d, want %d", s.src, s.dst, e2eFlags(s.tcp), s.ttl, want)
				}
				if s.df != p.persona.DF {
					t.Errorf("%s -> %s flags %v: DF %v, want %v", s.src, s.dst, e2eFlags(s.tcp), s.df, p.persona.DF)
				}
				if !(s.tcp.SYN && s.tcp.ACK) {
					continue
				}
				synacks++
				t.Logf("SYN-ACK %s -> %s: TTL %d DF %v window %d options %s (%v)", s.src, s.dst, s.ttl, s.df, s.tcp.Window,
					e2eP0fOptions(s.tcp.Options), s.tcp.Options)
				// The kernel's SYN offers MSS, SACK, timestamps and
				// window scale: the persona answers all it has.
				want := map[string]string{"plain": "mss", "embedded": "mss",
					"linux": "mss,sok,ts,nop,ws", "windows": "mss,nop,ws,sok,ts"}[p.persona.Name]
				if got := e2eP0fOptions(s.tcp.Options); got != want {
					t.Errorf("SYN-ACK %s -> %s: options %s, want %s", s.src, s.dst, got, want)
				}
				win := p.persona.Window
				if p.persona.Timestamps && p.persona.WindowTS != 0 {
					win = p.persona.WindowTS
				}
				if s.tcp.Window != win {
					t.Errorf("SYN-ACK %s -> %s: window %d, want %d", s.src, s.dst, s.tcp.Window, win)
				}
				for _, o := range s.tcp.Options {
					if o.OptionType == layers.TCPOptionKindWindowScale && int8(o.OptionData[0]) != p.persona.WScale {
						t.Errorf("SYN-ACK %s -> %s: window scale %d, want %d", s.src, s.dst, o.OptionData[0], p.persona.WScale)
					}
				}
			}
			if synacks < 2 || gvisor == 0 {
				t.Errorf("captured %d SYN-ACKs and %d data segments from %s, want 2 and at least 1", synacks, gvisor, p.addr)
			}
		})
	}
}

// e2eFlags writes a segment's flags as tcpdump does.
func e2eFlags(t *layers.TCP) string {
	var b strings.Builder
	for _, f := range []struct {
		on bool
		c  byte
	}{{t.SYN, 'S'}, {t.FIN, 'F'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.ACK, '.'}} {
		if f.on {
			b.WriteByte(f.c)
		}
	}
	return b.String()
}

// TestPersonasNmap runs nmap -O (one target, three ports, one retry, a
// time bound) against each persona in the lab and logs what it guesses;
// the README records the guesses. It asserts only that nmap fingerprinted
// each target (its OS detection ran on the telescope's answers): what
// nmap concludes is nmap's business.
func TestPersonasNmap(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "nmap")
	args := []string{"--persona", "plain"}
	for _, p := range e2ePersonaTargets[1:] {
		args = append(args, "--persona-prefix", p.prefix.String()+"="+p.persona.Name)
	}
	tel := e2eStartTelescope(t, l, args...)
	for _, p := range e2ePersonaTargets {
		out, _, code := e2eExec(t, l, l.Scanner, 90*time.Second, nil, "nmap", "-n", "-Pn", "-O", "--osscan-guess",
			"--max-retries", "1", "--host-timeout", "60s", "-p", "22,80,443", p.addr.String())
		if code != 0 {
			t.Errorf("%s: nmap exit %d", p.persona.Name, code)
			continue
		}
		var guess []string
		for _, line := range strings.Split(out, "\n") {
			for _, k := range []string{"Running", "OS details", "Aggressive OS guesses", "No exact OS matches", "No OS matches", "Too many fingerprints", "OS CPE"} {
				if strings.HasPrefix(line, k) {
					guess = append(guess, strings.TrimSpace(line))
				}
			}
		}
		if len(guess) == 0 {
			t.Errorf("%s: nmap printed no OS detection result", p.persona.Name)
		}
		t.Logf("nmap -O %s (%s): %s", p.addr, p.persona.Name, strings.Join(guess, " | "))
	}
	tel.stop(t)
}
