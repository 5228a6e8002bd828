package download

// The address policy: which remote addresses the downloader may connect
// to. A URL is chosen by an attacker, so by default nothing inside the
// site is reachable through it: the check runs in the dialer's Control
// hook, after name resolution, for every connection (redirects too), so
// that DNS names, rebinding and redirect chains meet the same rule as IP
// literals.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Range is one denied range and why it is denied.
type Range struct {
	Prefix netip.Prefix
	Why    string
}

// BuiltinDeny is the list of ranges that are never connected to unless
// Config.Allow opens them: everything that is not a public unicast
// address. The more specific ranges come first, so that a refusal names
// the most precise reason.
var BuiltinDeny = []Range{
	{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified, this network, RFC 1122"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private, RFC 1918"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private, RFC 1918"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private, RFC 1918"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space, CGNAT, RFC 6598"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, cloud metadata, RFC 3927"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments, RFC 6890"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation, RFC 5737"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast, RFC 7526"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking, RFC 2544"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, RFC 1112"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible, deprecated, RFC 4291"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64, RFC 8215"},
	{netip.MustParsePrefix("100::/64"), "discard-only, RFC 6666"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking, RFC 5180"},
	{netip.MustParsePrefix("2001:10::/28"), "ORCHID, RFC 4843"},
	{netip.MustParsePrefix("2001:20::/28"), "ORCHIDv2, RFC 7343"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation, RFC 3849"},
	{netip.MustParsePrefix("3fff::/20"), "documentation, RFC 9637"},
	{netip.MustParsePrefix("5f00::/16"), "SRv6 SIDs, RFC 9602"},
	{netip.MustParsePrefix("fc00::/7"), "unique local, ULA, RFC 4193"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local, deprecated, RFC 3879"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Prefixes of IPv6 forms that carry an IPv4 address, which is checked as
// well: a NAT64 gateway or a 6to4/Teredo relay would take the connection
// to that IPv4 address.
var (
	nat64WKP  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
	siit      = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// Policy decides which remote addresses may be connected to.
//
// Precedence, from first to last:
//  1. an address in an operator's deny range (Config.Deny) is refused;
//  2. an address in an allow range (Config.Allow) is allowed, even when a
//     built-in range contains it: an allow range opens exactly its own
//     addresses, not the whole built-in range around them;
//  3. an address in a built-in range (BuiltinDeny, the telescope's own
//     prefixes, the host's own addresses), or an IPv6 address that embeds
//     such an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo), is refused;
//  4. every other address is allowed.
//
// An IPv4-mapped address (::ffff:a.b.c.d) is checked as the IPv4 address
// it is.
type Policy struct {
	allow   []netip.Prefix
	deny    []Range // the operator's, rule 1
	builtin []Range // rule 3
}

// NewPolicy builds the policy from the operator's allow and deny ranges,
// the telescope's prefixes and the host's own addresses (see HostAddrs).
func NewPolicy(allow, deny, telescope []netip.Prefix, own []netip.Addr) *Policy {
	p := &Policy{}
	for _, a := range allow {
		p.allow = append(p.allow, a.Masked())
	}
	for _, d := range deny {
		p.deny = append(p.deny, Range{d.Masked(), "--deny"})
	}
	for _, t := range telescope {
		p.builtin = append(p.builtin, Range{t.Masked(), "the telescope's prefix"})
	}
	// The host's addresses last, so that 127.0.0.1 is refused as
	// loopback, a more telling reason.
	p.builtin = append(p.builtin, BuiltinDeny...)
	for _, a := range own {
		a = a.Unmap().WithZone("")
		p.builtin = append(p.builtin, Range{netip.PrefixFrom(a, a.BitLen()), "this host's address"})
	}
	return p
}

// HostAddrs returns the addresses of the host's interfaces (in the
// current network namespace).
func HostAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("download: interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if x, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, x.Unmap())
		}
	}
	return out, nil
}

// DeniedError is the refusal of one connection.
type DeniedError struct {
	// Addr is the address that was to be connected to, Port its port.
	Addr netip.Addr
	Port uint16
	// Range is the range that refused it, Why its name.
	Range netip.Prefix
	Why   string
	// Embedded is the IPv4 address inside Addr that was refused, if it
	// was not Addr itself.
	Embedded netip.Addr
}

// Error says which address was refused and why, e.g. "denied: 127.0.0.1
// port 80 is in 127.0.0.0/8 (loopback)".
func (e *DeniedError) Error() string {
	var sb strings.Builder
	sb.WriteString("denied: ")
	sb.WriteString(e.Addr.String())
	if e.Port != 0 {
		sb.WriteString(" port " + strconv.Itoa(int(e.Port)))
	}
	if e.Embedded.IsValid() {
		sb.WriteString(" embeds " + e.Embedded.String() + ", which")
	}
	sb.WriteString(" is in " + e.Range.String() + " (" + e.Why + ")")
	return sb.String()
}

// Is makes errors.Is(err, ErrDenied) hold.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Check returns nil if a may be connected to, or a *DeniedError.
func (p *Policy) Check(a netip.Addr, port uint16) error {
	a = a.WithZone("").Unmap()
	emb := embedded(a)
	for _, r := range p.deny {
		if r.Prefix.Contains(a) {
			return &DeniedError{Addr: a, Port: port, Range: r.Prefix, Why: r.Why}
		}
		if emb.IsValid() && r.Prefix.Contains(emb) {
			return &DeniedError{Addr: a, Port: port, Range: r.Prefix, Why: r.Why, Embedded: emb}
		}
	}
	if p.allowed(a) {
		return nil
	}
	for _, r := range p.builtin {
		if r.Prefix.Contains(a) {
			return &DeniedError{Addr: a, Port: port, Range: r.Prefix, Why: r.Why}
		}
	}
	if emb.IsValid() && !p.allowed(emb) {
		for _, r := range p.builtin {
			if r.Prefix.Contains(emb) {
				return &DeniedError{Addr: a, Port: port, Range: r.Prefix, Why: r.Why, Embedded: emb}
			}
		}
	}
	return nil
}

func (p *Policy) allowed(a netip.Addr) bool {
	for _, x := range p.allow {
		if x.Contains(a) {
			return true
		}
	}
	return false
}

// embedded returns the IPv4 address that an IPv6 address carries in the
// forms a gateway or relay would connect to: NAT64 (64:ff9b::/96), SIIT
// (::ffff:0:0:0/96), 6to4 (2002::/16) and Teredo's client (2001::/32,
// inverted). It returns the zero Addr for other addresses.
func embedded(a netip.Addr) netip.Addr {
	if !a.Is6() {
		return netip.Addr{}
	}
	b := a.As16()
	switch {
	case nat64WKP.Contains(a), siit.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6]))
	case teredo.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
	}
	return netip.Addr{}
}

// parseInetAton reads the IPv4 spellings that inet_aton(3) accepts and
// that wget and curl therefore connect to: one to four parts, each decimal,
// octal (leading 0) or hex (0x), the last part filling the remaining
// bytes, e.g. 2130706433, 0x7f000001, 0177.0.0.1, 127.1. It reports false
// for anything else.
func parseInetAton(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*uint(i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*uint(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// dialHost maps the host of a URL to what is dialled: an inet_aton
// spelling becomes its IPv4 address (as wget and curl read it, and without
// a DNS query for it), and localhost and *.localhost become 127.0.0.1 (RFC
// 6761). Other hosts are returned as they are, to be resolved; the Control
// hook checks whatever address they resolve to.
func dialHost(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	if a, ok := parseInetAton(host); ok {
		return a.String()
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "127.0.0.1"
	}
	return host
}
