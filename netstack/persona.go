package netstack

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A telescope whose SYN-ACKs all carry the same options and window is easy
// to label: scanners such as IVRE flag "SYN-ACK honeypots" by exactly that.
// A Persona makes the answers of a prefix look like those of one operating
// system: the SYN-ACK's option set and order, its window and window scale,
// timestamps, and the IP header (TTL or hop limit, DF, IP ID) of every
// segment the telescope sends on the prefix, gVisor's included.
//
// As a real stack does, a persona answers an option only if the SYN
// carried it: SACK-permitted, timestamps and window scale are never
// claimed to a client that did not offer them (RFC 2018, RFC 7323).
//
// What the cookie and gVisor make of the options:
//   - MSS: the cookie carries the client's (gVisor's encoding); the
//     telescope announces the link's.
//   - Timestamps: gVisor enables them on a cookie connection when the ACK
//     carries them. The SYN-ACK's TSval is the one gVisor's connection will
//     continue from (gVisor's per-address-pair offset, whose secret the
//     front end hands to gVisor's TCP protocol, plus the stack clock), so
//     that the client's PAWS check never drops gVisor's later segments.
//   - Window scale: gVisor's cookie path turns window scaling off on both
//     sides. When a persona announces a scale s, the cookie's MSS index
//     records whether it did (its low bit; the MSS index of such cookies is
//     rounded down to keep that bit, which costs at most a smaller MSS), and
//     the front end rewrites the window of gVisor's segments on that
//     connection to gVisor's window >> s (rounded up), so that the client's
//     view of our receive window is gVisor's. The client's own window is
//     read by gVisor unscaled, which only makes gVisor send more slowly.
//     A client MSS below 1300 leaves no MSS index with the bit: the scale
//     is announced anyway (as the persona's OS would), and the client then
//     reads gVisor's windows 2^s times too large; data beyond gVisor's
//     real window is dropped by gVisor and sent again by the client, so
//     only a bulk upload slows down.
//   - SACK-permitted: gVisor does not use SACK on a cookie connection;
//     claiming it is harmless (the client may send SACK blocks, which
//     gVisor ignores, and never expects any).
type Persona struct {
	// Name is how the configuration names the persona.
	Name string
	// Layout is the order of the SYN-ACK's options.
	Layout OptionLayout
	// SACK answers SACK-permitted, Timestamps answers the timestamps
	// option, when the SYN offers them.
	SACK, Timestamps bool
	// WScale is the window scale announced when the SYN offers one; -1
	// announces none.
	WScale int8
	// Window is the SYN-ACK's window without the timestamps option;
	// WindowTS with it (0: Window). The front end's ACK of a handshake
	// carries the same window (scaled when scaling was agreed).
	Window, WindowTS uint16
	// ResetWindow is the window of the front end's RST (pure mode).
	ResetWindow uint16
	// TTL is the IPv4 TTL and the IPv6 hop limit.
	TTL uint8
	// DF sets IPv4's don't-fragment bit.
	DF bool
	// IPID is how IPv4 identifications are chosen.
	IPID IPIDMode
}

// OptionLayout is the order in which a persona writes the SYN-ACK's
// options. Each writes the MSS first, then blocks that appear only when the
// option is answered: "NOP WS" for window scale; "SACK TS" when both SACK
// and timestamps are answered, "NOP NOP TS" or "NOP NOP SACK" when one is.
type OptionLayout uint8

const (
	// LayoutMSS writes the MSS option alone (lwIP, today's spoki).
	LayoutMSS OptionLayout = iota
	// LayoutLinux is Linux's tcp_options_write: MSS, the SACK/TS block,
	// then NOP WS (p0f's "mss,sok,ts,nop,ws").
	LayoutLinux
	// LayoutWindows is Windows': MSS, NOP WS, then the SACK/TS block
	// (p0f's "mss,nop,ws,sok,ts").
	LayoutWindows
)

// IPIDMode is how a persona chooses IPv4 identifications.
type IPIDMode uint8

const (
	// IPIDRandom draws each ID at random.
	IPIDRandom IPIDMode = iota
	// IPIDZero writes 0 (Linux's DF SYN-ACKs: nmap's TI=Z).
	IPIDZero
	// IPIDIncrement counts up, one counter for the whole telescope
	// (Windows and lwIP: nmap's TI=I).
	IPIDIncrement
)

// maxOptionsLen is the longest option block a persona writes: MSS (4),
// SACK-permitted with timestamps (12), NOP and window scale (4).
const maxOptionsLen = header.TCPOptionMSSLength + 12 + 4

// Built-in personas. Their values come from nmap's nmap-os-db (OPS, WIN,
// T1 and SEQ lines) and p0f's SYN-ACK signatures.
var (
	// PersonaPlain is spoki's shape before personas: MSS only, window
	// 65535, TTL 64, DF, random IP IDs; gVisor's segments are left as
	// gVisor writes them. It is the default.
	PersonaPlain = &Persona{Name: "plain", Layout: LayoutMSS, WScale: -1,
		Window: reactWindow, ResetWindow: reactWindow, TTL: defaultTTL, DF: true, IPID: IPIDRandom}
	// PersonaLinux is Linux 5.x with its defaults: MSS, SACK, timestamps,
	// NOP, WS 7; window 65160 with timestamps, 64240 without; TTL 64; DF;
	// IP ID 0 (nmap "Linux 5.0 - 5.4": O1=M5B4ST11NW7, W1=FE88,
	// ECN W=FAF0 O=M5B4NNSNW7, TI=Z).
	PersonaLinux = &Persona{Name: "linux", Layout: LayoutLinux, SACK: true, Timestamps: true,
		WScale: 7, Window: 64240, WindowTS: 65160, ResetWindow: 0, TTL: 64, DF: true, IPID: IPIDZero}
	// PersonaWindows is Windows 10: MSS, NOP, WS 8, SACK, timestamps
	// (answered when offered); window 8192; TTL 128; DF; incrementing IP
	// IDs (nmap "Microsoft Windows 10": O1=M5B4NW8ST11, W1=2000, ECN
	// O=M5B4NW8NNS, TI=I).
	PersonaWindows = &Persona{Name: "windows", Layout: LayoutWindows, SACK: true, Timestamps: true,
		WScale: 8, Window: 8192, ResetWindow: 0, TTL: 128, DF: true, IPID: IPIDIncrement}
	// PersonaEmbedded is an lwIP device (cameras, PDUs, esp8266 firmware):
	// MSS only, window 5840, TTL 255, no DF, incrementing IP IDs (nmap
	// "lwIP 1.4.0": O1=M5B4, W1=16D0, TG=FF, DF=N, TI=I).
	PersonaEmbedded = &Persona{Name: "embedded", Layout: LayoutMSS, WScale: -1,
		Window: 5840, ResetWindow: 5840, TTL: 255, DF: false, IPID: IPIDIncrement}
)

// Personas lists the built-in personas by name.
var Personas = map[string]*Persona{
	PersonaPlain.Name:    PersonaPlain,
	PersonaLinux.Name:    PersonaLinux,
	PersonaWindows.Name:  PersonaWindows,
	PersonaEmbedded.Name: PersonaEmbedded,
}

// PersonaNames returns the built-ins' names, sorted.
func PersonaNames() []string {
	names := make([]string, 0, len(Personas))
	for n := range Personas {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupPersona returns the built-in persona called name ("" is plain).
func LookupPersona(name string) (*Persona, error) {
	if name == "" {
		return PersonaPlain, nil
	}
	if p, ok := Personas[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("unknown persona %q (built-ins: %s)", name, strings.Join(PersonaNames(), ", "))
}

// PersonaPrefix gives a prefix its persona.
type PersonaPrefix struct {
	Prefix  netip.Prefix
	Persona *Persona
}

// PersonaLookup returns the function Config.Persona takes: the persona of
// the most specific prefix of byPrefix that holds the address, else def
// (nil: plain). It is called on the packet path and allocates nothing.
func PersonaLookup(def *Persona, byPrefix []PersonaPrefix) func(netip.Addr) *Persona {
	if def == nil {
		def = PersonaPlain
	}
	table := slices.Clone(byPrefix)
	sort.SliceStable(table, func(i, j int) bool { return table[i].Prefix.Bits() > table[j].Prefix.Bits() })
	return func(a netip.Addr) *Persona {
		for i := range table {
			if table[i].Prefix.Contains(a) {
				return table[i].Persona
			}
		}
		return def
	}
}

// persona returns the persona of the telescope's address a.
func (s *Stack) persona(a netip.Addr) *Persona {
	if s.cfg.Persona == nil {
		return PersonaPlain
	}
	if p := s.cfg.Persona(a); p != nil {
		return p
	}
	return PersonaPlain
}

// ipIDCounter is the telescope-wide counter of IPIDIncrement.
var ipIDCounter atomic.Uint32

func (p *Persona) ipID() uint16 {
	switch p.IPID {
	case IPIDZero:
		return 0
	case IPIDIncrement:
		return uint16(ipIDCounter.Add(1))
	default:
		return uint16(rand.Uint32())
	}
}

// synWindow is the SYN-ACK's window (never scaled, RFC 7323 §2.2).
func (p *Persona) synWindow(ts bool) uint16 {
	if ts && p.WindowTS != 0 {
		return p.WindowTS
	}
	return p.Window
}

// scaleWindow is the window field that makes a client that agreed to
// shift read (about) w: w >> shift, rounded up so that an open window never
// reads as closed.
func scaleWindow(w uint16, shift uint8) uint16 {
	if shift == 0 {
		return w
	}
	return uint16((uint32(w) + 1<<shift - 1) >> shift)
}

// synOptions are the options a SYN-ACK answers.
type synOptions struct {
	ts           bool
	tsVal, tsEcr uint32
	sack         bool
	// wsOn announces window scale ws.
	wsOn bool
	ws   uint8
}

// writeOptions writes the SYN-ACK's options after the MSS option in the
// persona's layout into b (at least maxOptionsLen - 4 bytes) and returns
// their length, a multiple of 4.
func (l OptionLayout) writeOptions(o *synOptions, b []byte) int {
	n := 0
	wsBlock := func() {
		if o.wsOn {
			n += header.EncodeNOP(b[n:])
			n += header.EncodeWSOption(int(o.ws), b[n:])
		}
	}
	if l == LayoutWindows {
		wsBlock()
	}
	switch {
	case o.sack && o.ts:
		n += header.EncodeSACKPermittedOption(b[n:])
		n += header.EncodeTSOption(o.tsVal, o.tsEcr, b[n:])
	case o.ts:
		n += header.EncodeNOP(b[n:])
		n += header.EncodeNOP(b[n:])
		n += header.EncodeTSOption(o.tsVal, o.tsEcr, b[n:])
	case o.sack:
		n += header.EncodeNOP(b[n:])
		n += header.EncodeNOP(b[n:])
		n += header.EncodeSACKPermittedOption(b[n:])
	}
	if l == LayoutLinux {
		wsBlock()
	}
	return n
}

// errTSSecretUnread means gVisor's TCP protocol did not read its secrets
// as tcpProtocol expects: the front end's timestamps would not be those
// gVisor's connections continue from.
var errTSSecretUnread = errors.New("netstack: TCP protocol did not consume the injected timestamp secret")

// tsSecretLen is the size of gVisor's TCP timestamp offset secret.
const tsSecretLen = 16

// tsVal is the timestamp gVisor's connection between local and remote
// sends at this moment: the stack clock in milliseconds plus gVisor's
// per-address-pair offset (transport/tcp protocol.tsOffset: the first four
// bytes, little-endian, of SHA-256(secret‖local‖remote)). The front end's
// timestamps use it so that gVisor's later ones never go backwards.
// TestPersonaHandshake pins it.
func (s *Stack) tsVal(local, remote []byte) uint32 {
	var buf [tsSecretLen + 32]byte
	n := copy(buf[:], s.tsSecret[:])
	n += copy(buf[n:], local)
	n += copy(buf[n:], remote)
	sum := sha256.Sum256(buf[:n])
	ms := uint32(s.jar.clock.NowMonotonic().Sub(tcpip.MonotonicTime{}).Milliseconds())
	return ms + binary.LittleEndian.Uint32(sum[:4])
}

// tcpProtocol returns gVisor's TCP protocol factory, with the timestamp
// secret of the Stack handed to the protocol through the nonce RNG (gVisor
// reads its sequence number secret, then its timestamp offset secret, at
// protocol creation). *failed is set if the protocol did not read exactly
// those 32 bytes.
func (s *Stack) tcpProtocol(newProtocol stack.TransportProtocolFactory, failed *bool) stack.TransportProtocolFactory {
	return func(st *stack.Stack) stack.TransportProtocol {
		var secrets [16 + tsSecretLen]byte
		if _, err := s.rng.Read(secrets[:16]); err != nil {
			*failed = true
		}
		copy(secrets[16:], s.tsSecret[:])
		s.rng.mu.Lock()
		s.rng.pending = secrets[:]
		s.rng.mu.Unlock()
		p := newProtocol(st)
		s.rng.mu.Lock()
		if len(s.rng.pending) != 0 {
			*failed = true
		}
		s.rng.pending = nil
		s.rng.mu.Unlock()
		return p
	}
}

// encodeCookieData is the cookie's 2-bit data for a SYN with MSS mss to a
// persona that announces window scale when ws: gVisor's MSS index, except
// that the low bit then says whether window scale was announced (the index
// is rounded down to the nearest with the right low bit). ok is false if
// no index has the bit (a client MSS below 1300 with window scale): data
// then says no scale, and gVisor's windows are left unscaled.
func encodeCookieData(mss uint16, scaling, ws bool) (data uint32, ok bool) {
	i := encodeMSS(mss)
	if !scaling {
		return i, true
	}
	if ws {
		if i&1 == 0 {
			if i == 0 {
				return 0, false
			}
			i--
		}
		return i, true
	}
	return i &^ 1, true
}

// rewriteOut makes one of gVisor's outgoing TCP segments the persona's:
// the IP header's TTL (hop limit), DF and ID, and, on a connection that
// agreed to window scale shift, the window.
func (s *Stack) rewriteOut(pkt *stack.PacketBuffer, p *Persona, shift uint8) {
	nh := pkt.NetworkHeader().Slice()
	if pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber {
		ip := header.IPv4(nh)
		ip.SetTTL(p.TTL)
		flags := ip.Flags() &^ header.IPv4FlagDontFragment
		if p.DF {
			flags |= header.IPv4FlagDontFragment
		}
		ip.SetFlagsFragmentOffset(flags, ip.FragmentOffset())
		ip.SetID(p.ipID())
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(nh).SetHopLimit(p.TTL)
	}
	if shift == 0 {
		return
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return
	}
	old := th.WindowSize()
	w := scaleWindow(old, shift)
	th.SetWindowSize(w)
	th.SetChecksum(^checksumUpdate16(^th.Checksum(), old, w))
}

// checksumUpdate16 is the ones'-complement sum sum with the 16-bit word old
// replaced by new (RFC 1624, eqn. 3, before the final complement).
func checksumUpdate16(sum, old, new uint16) uint16 {
	x := uint32(sum) + uint32(^old) + uint32(new)
	x = x&0xffff + x>>16
	x = x&0xffff + x>>16
	return uint16(x)
}

// shapeOut gives one of gVisor's outgoing segments, from the telescope's
// address local on a connection that agreed to window scale shift, its
// persona's shape. PersonaPlain leaves gVisor's segments as they are.
func (s *Stack) shapeOut(pkt *stack.PacketBuffer, local netip.Addr, shift uint8) {
	if s.cfg.Persona == nil {
		return
	}
	p := s.persona(local)
	if p == PersonaPlain {
		return
	}
	if p.WScale < 0 {
		shift = 0
	}
	s.rewriteOut(pkt, p, shift)
}
