package records

// This file holds the SYN classification shared by the netstack (live) and
// the analysis (offline): the paper's irregular rule and the scanner
// fingerprints. Everything here is a pure function of one Packet and
// allocates nothing, so it may run on the packet path.

// TCP option kinds that the classification and the encoders name
// (IANA "TCP Option Kind Numbers").
const (
	optEOL       = 0
	optNOP       = 1
	optMSS       = 2
	optWScale    = 3
	optSACKPerm  = 4
	optSACK      = 5
	optTimestamp = 8
)

// zmapIPID is the static IP ID that ZMap puts in every probe
// (zmap src/probe_modules/packet.c: `iph->ip_id = htons(54321)`).
const zmapIPID = 54321

// irregularTTL is the TTL above which a packet is irregular: an observed TTL
// over 200 means an initial TTL of 255, which raw-socket scanners use and
// common stacks (64, 128) do not.
const irregularTTL = 200

// Reasons is the set of irregular rules a packet matched, a bitset so that
// computing it allocates nothing.
type Reasons uint8

// The irregular rules of the paper (docs/spoki-compat.md#the-telescope), in
// the order Names lists them.
const (
	// ReasonIPID54321: the IP ID is ZMap's static 54321.
	ReasonIPID54321 Reasons = 1 << iota
	// ReasonTTLOver200: the TTL is above 200 (initial TTL 255).
	ReasonTTLOver200
	// ReasonNoTCPOptions: a TCP packet with no option other than NOP/EOL.
	ReasonNoTCPOptions
)

// reasonNames holds the stable names of the rules, indexed by bit.
var reasonNames = [...]string{"ipid_54321", "ttl_gt_200", "no_tcp_options"}

// reasonSets holds Names for every combination, built once so that Names
// returns without allocating.
var reasonSets = func() (sets [1 << len(reasonNames)][]string) {
	for r := range sets {
		sets[r] = []string{}
		for i, name := range reasonNames {
			if r&(1<<i) != 0 {
				sets[r] = append(sets[r], name)
			}
		}
	}
	return sets
}()

// Has reports whether every reason of x is in r.
func (r Reasons) Has(x Reasons) bool { return r&x == x }

// Names returns the names of the reasons in r, in the fixed order
// ipid_54321, ttl_gt_200, no_tcp_options; an empty (non-nil) slice for none.
// The slice is shared: callers must not modify it.
func (r Reasons) Names() []string {
	return reasonSets[r&(1<<len(reasonNames)-1)]
}

// AppendJSON appends r as a JSON array of names (`[]` for none).
func (r Reasons) AppendJSON(dst []byte) []byte {
	dst = append(dst, '[')
	for i, name := range r.Names() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

// Irregular applies the paper's rule (Spoki's `vis_key_builder`, kept as
// is: docs/spoki-compat.md#the-telescope): a packet is irregular when its IP ID is 54321, its TTL
// is above 200, or, for TCP, it carries no option other than NOP/EOL. The
// rule is meant for SYNs; UDP and ICMP use only the first two tests. IPv6
// packets have IPID 0, so only the TTL (hop limit) and option tests apply.
func Irregular(p *Packet) (irregular bool, reasons Reasons) {
	if p.IPID == zmapIPID {
		reasons |= ReasonIPID54321
	}
	if p.TTL > irregularTTL {
		reasons |= ReasonTTLOver200
	}
	if p.Proto == ProtoTCP && !hasRealOption(p) {
		reasons |= ReasonNoTCPOptions
	}
	return reasons != 0, reasons
}

// hasRealOption reports whether p carries a TCP option other than NOP and
// EOL. A truncated list had more options than MaxOptions, so it has one.
func hasRealOption(p *Packet) bool {
	if p.OptionsTruncated {
		return true
	}
	for _, k := range p.Options[:min(int(p.NumOptions), MaxOptions)] {
		if k != optNOP && k != optEOL {
			return true
		}
	}
	return false
}

// Scanner names the tool a SYN's fingerprint points to.
type Scanner uint8

// Scanner fingerprints, in the order Fingerprint tests them.
const (
	// ScannerUnknown: no fingerprint matched.
	ScannerUnknown Scanner = iota
	// ScannerZMap: IP ID 54321.
	ScannerZMap
	// ScannerMasscan: IP ID == (dst IP ^ dst port ^ seq) & 0xffff.
	ScannerMasscan
	// ScannerMirai: seq == dst IP.
	ScannerMirai
	// ScannerNmap: nmap -sS raw SYN (one MSS option, window 1024..4096).
	ScannerNmap
)

// String returns the fingerprint's name as written in the `scanner` field
// of `syn` events.
func (s Scanner) String() string {
	switch s {
	case ScannerZMap:
		return "zmap"
	case ScannerMasscan:
		return "masscan"
	case ScannerMirai:
		return "mirai"
	case ScannerNmap:
		return "nmap"
	}
	return "unknown"
}

// Fingerprint names the scanner that most likely built the SYN p; the first
// matching rule wins:
//
//   - zmap: IP ID 54321. ZMap writes this constant into every probe
//     (src/probe_modules/packet.c); also the paper's first irregular rule.
//   - masscan (IPv4, TCP): IP ID == (dst IP ^ dst port ^ seq) & 0xffff, with
//     the dst IP as a big-endian uint32. Masscan derives the IP ID from its
//     SYN cookie this way (templ-pkt.c: `ip_id = ip_them ^ port_them ^ seqno`,
//     stored in 16 bits). Spoki's evaluation (analyzer.py) omits the 16-bit
//     truncation and so almost never matches; this is masscan's real rule.
//   - mirai (IPv4, TCP): seq == dst IP as uint32. Mirai's scanner
//     (bot/scanner.c: `tcph->seq = iph->daddr`) does this on every SYN. The
//     evaluation also requires dst port 23 or 2323; variants scan other ports,
//     so this rule does not.
//   - nmap (TCP): exactly one option, MSS, and a window of 1024, 2048, 3072 or
//     4096. nmap -sS sends TCP_SYN_PROBE_OPTIONS = MSS 1460 only
//     (scan_engine_raw.cc, nmap.h) and build_tcp_raw sets the window to 1024
//     (tcpip.cc, current) or 1024*(ttl%4+1) (older releases).
//   - unknown otherwise.
//
// It is meant for SYNs (see Packet.IsSYN); other packets are fingerprinted
// the same way but the rules were only validated on SYNs.
func Fingerprint(p *Packet) Scanner {
	if p.IPID == zmapIPID {
		return ScannerZMap
	}
	if p.Proto != ProtoTCP {
		return ScannerUnknown
	}
	if p.Dst.Is4() {
		d := p.Dst.As4()
		dst := uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
		if uint32(p.IPID) == (dst^uint32(p.DstPort)^p.Seq)&0xffff {
			return ScannerMasscan
		}
		if p.Seq == dst {
			return ScannerMirai
		}
	}
	if p.NumOptions == 1 && !p.OptionsTruncated && p.Options[0] == optMSS {
		switch p.Window {
		case 1024, 2048, 3072, 4096:
			return ScannerNmap
		}
	}
	return ScannerUnknown
}
