// Package udpreply holds the answers spoki gives to UDP probes of the
// services scanners probe most (DNS, NTP, SSDP, SIP, memcached, NetBIOS
// name service, SNMP), and the parsers that read those probes for the
// `udp` event.
//
// Spoki's UDP answers must never make it an amplifier: a probe's source can
// be spoofed, and the answer then goes to a victim. So every answer is at
// most as long as the probe's payload (Answer enforces it for every
// service, whatever the service's code does, and reports TooLarge instead
// of answering), no service answers with more than one datagram, and the
// requests known for amplification (NTP mode 7 monlist and mode 6, SNMP
// Set, memcached's other commands, DNS queries of any kind) get nothing
// or a short refusal. The caller rate-limits per source.
//
// Everything here is pure: no state, no allocation on the answer path (the
// answer is written into the caller's buffer), and every parser is fuzzed.
package udpreply

import (
	"net/netip"
	"time"
)

// Service is a UDP service spoki answers.
type Service uint8

// The services, each on its well-known port (ServiceOf).
const (
	None Service = iota
	DNS
	NTP
	SSDP
	SIP
	Memcached
	NetBIOS
	SNMP
)

// String is the service's name in the `udp` event.
func (s Service) String() string {
	switch s {
	case DNS:
		return "dns"
	case NTP:
		return "ntp"
	case SSDP:
		return "ssdp"
	case SIP:
		return "sip"
	case Memcached:
		return "memcached"
	case NetBIOS:
		return "netbios-ns"
	case SNMP:
		return "snmp"
	}
	return ""
}

// Ports of the services.
const (
	PortDNS       = 53
	PortNTP       = 123
	PortNetBIOS   = 137
	PortSNMP      = 161
	PortSSDP      = 1900
	PortSIP       = 5060
	PortMemcached = 11211
)

// ServiceOf is the service on UDP port port, None for every other port.
func ServiceOf(port uint16) Service {
	switch port {
	case PortDNS:
		return DNS
	case PortNTP:
		return NTP
	case PortNetBIOS:
		return NetBIOS
	case PortSNMP:
		return SNMP
	case PortSSDP:
		return SSDP
	case PortSIP:
		return SIP
	case PortMemcached:
		return Memcached
	}
	return None
}

// Result is what Answer did.
type Result uint8

const (
	// Answered: out holds the answer.
	Answered Result = iota
	// NoService: no service on the port; nothing is answered.
	NoService
	// Malformed: the payload is not a request the service answers
	// (malformed, or of a kind it never answers: NTP mode 7, SNMP Set,
	// a SIP INVITE, ...).
	Malformed
	// TooLarge: the answer would have been longer than the request, or
	// longer than out; nothing is answered.
	TooLarge
)

// Request is one UDP probe as Answer sees it.
type Request struct {
	// Payload is the UDP payload.
	Payload []byte
	// Local is the telescope address the probe was sent to (an SSDP
	// answer names it in its LOCATION), Port the UDP port.
	Local netip.Addr
	Port  uint16
	// Now is the time of the answer (NTP's timestamps).
	Now time.Time
}

// Answer writes the answer to r into out and returns its length. An answer
// is never longer than r.Payload: a service whose answer would be is
// refused centrally here, with TooLarge, so that no bug of a service can
// make spoki amplify. It allocates nothing.
func Answer(out []byte, r *Request) (n int, svc Service, res Result) {
	svc = ServiceOf(r.Port)
	if svc == None {
		return 0, svc, NoService
	}
	w := writer{buf: out}
	var ok bool
	switch svc {
	case DNS:
		ok = answerDNS(&w, r.Payload)
	case NTP:
		ok = answerNTP(&w, r.Payload, r.Now)
	case SSDP:
		ok = answerSSDP(&w, r.Payload, r.Local)
	case SIP:
		ok = answerSIP(&w, r.Payload)
	case Memcached:
		ok = answerMemcached(&w, r.Payload)
	case NetBIOS:
		ok = answerNetBIOS(&w, r.Payload)
	case SNMP:
		ok = answerSNMP(&w, r.Payload)
	}
	switch {
	case !ok:
		return 0, svc, Malformed
	case w.short || w.n > len(r.Payload):
		return 0, svc, TooLarge
	}
	return w.n, svc, Answered
}

// writer writes into a fixed buffer; a write that does not fit sets short
// and writes nothing more.
type writer struct {
	buf   []byte
	n     int
	short bool
}

func (w *writer) bytes(p []byte) {
	if w.short || len(w.buf)-w.n < len(p) {
		w.short = true
		return
	}
	w.n += copy(w.buf[w.n:], p)
}

func (w *writer) str(s string) {
	if w.short || len(w.buf)-w.n < len(s) {
		w.short = true
		return
	}
	w.n += copy(w.buf[w.n:], s)
}

func (w *writer) byte1(b byte) {
	if w.short || w.n >= len(w.buf) {
		w.short = true
		return
	}
	w.buf[w.n] = b
	w.n++
}

func (w *writer) u16(v uint16) { w.byte1(byte(v >> 8)); w.byte1(byte(v)) }

func (w *writer) u32(v uint32) { w.u16(uint16(v >> 16)); w.u16(uint16(v)) }

// fits reports whether k more bytes stay within budget (the request's
// length), for services that leave out optional parts that do not fit.
func (w *writer) fits(k, budget int) bool { return w.n+k <= budget && w.n+k <= len(w.buf) }
