package records

// This file holds the Spoki-compatible CSV logs (docs/formats.md):
// append-style encoders for the writer goroutine, which must not allocate,
// and parsers for the offline tools and the tests.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// CSV headers, without the line end. A file's first line is its header
// followed by '\n'.
const (
	// RawHeader is the header of the raw TCP log, Spoki's
	// `defaults::raw_csv_header`, byte for byte.
	RawHeader = "ts|saddr|daddr|ipid|ttl|proto|sport|dport|anum|snum|options|payload|syn|ack|rst|fin|window size|probed|method|userid|probe anum|probe snum|num probes"
	// UDPRawHeader is the header of the raw UDP log. Spoki writes UDP rows
	// under the TCP header with a missing delimiter; spoki
	// gives UDP its own file and only the columns that mean something:
	// ts (ms), saddr, daddr, ipid, ttl, proto (`udp`), sport, dport, payload
	// (lowercase hex), probed, method, userid, num probes.
	UDPRawHeader = "ts|saddr|daddr|ipid|ttl|proto|sport|dport|payload|probed|method|userid|num probes"
	// ICMPRawHeader is the header of the raw ICMP log: as UDPRawHeader with
	// the ICMP type and code (decimal, ICMPv6 numbering for IPv6 rows) in
	// place of the ports. Spoki logged a type name in `options` and never
	// the code.
	ICMPRawHeader = "ts|saddr|daddr|ipid|ttl|proto|type|code|payload|probed|method|userid|num probes"
	// ReplyHeader is the header of the reply log, Spoki's
	// `defaults::scamper_csv_header`, byte for byte.
	ReplyHeader = "start sec|start usec|method|userid|num probes|saddr|daddr|sport|dport"
)

// Column counts of the formats.
const (
	rawTCPColumns   = 23
	rawOtherColumns = 13
	replyColumns    = 9
)

// ErrMalformedRow is wrapped by every parse error: the line is not a row of
// the format. The caller should skip the line (and count it), not stop.
var ErrMalformedRow = errors.New("records: malformed row")

// RawHeaderFor returns the raw-log header for packets of proto (RawHeader for
// TCP and unknown protocols).
func RawHeaderFor(proto Proto) string {
	switch proto {
	case ProtoUDP:
		return UDPRawHeader
	case ProtoICMP:
		return ICMPRawHeader
	}
	return RawHeader
}

// csvOptionName maps a TCP option kind to Spoki's name; NOP and EOL have
// none (Spoki skips them) and every other kind is "other".
func csvOptionName(kind uint8) (name string, index int) {
	switch kind {
	case optEOL, optNOP:
		return "", -1
	case optMSS:
		return "mss", 0
	case optWScale:
		return "window_scale", 1
	case optSACKPerm:
		return "sack_permitted", 2
	case optSACK:
		return "sack", 3
	case optTimestamp:
		return "timestamp", 4
	}
	return "other", 5
}

// optOther is the kind a parsed `other` option gets: the real kind is not in
// the log, so an experimental kind (RFC 4727) stands in for it.
const optOther = 254

// AppendRawRow appends p as one raw-log row ending in '\n', in the format of
// its protocol (RawHeaderFor): TCP rows exactly as Spoki writes them; UDP and
// ICMP rows in spoki's own columns. The time is truncated to milliseconds.
// It allocates nothing beyond growing dst.
func AppendRawRow(dst []byte, p *Packet) []byte {
	dst = appendInt(dst, p.Time.UnixMilli())
	dst = append(dst, '|')
	dst = appendAddr(dst, p.Src)
	dst = append(dst, '|')
	dst = appendAddr(dst, p.Dst)
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.IPID))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.TTL))
	dst = append(dst, '|')
	dst = append(dst, p.Proto.String()...)
	dst = append(dst, '|')
	switch p.Proto {
	case ProtoUDP, ProtoICMP:
		if p.Proto == ProtoUDP {
			dst = appendUint(dst, uint64(p.SrcPort))
			dst = append(dst, '|')
			dst = appendUint(dst, uint64(p.DstPort))
		} else {
			dst = appendUint(dst, uint64(p.ICMPType))
			dst = append(dst, '|')
			dst = appendUint(dst, uint64(p.ICMPCode))
		}
		dst = append(dst, '|')
		dst = hex.AppendEncode(dst, p.Payload)
		dst = append(dst, '|')
		if !p.Probed {
			return append(dst, "false|||\n"...)
		}
		dst = append(dst, "true|"...)
		dst = append(dst, p.Method.String()...)
		dst = append(dst, '|')
		dst = appendUint(dst, uint64(p.UserID))
		dst = append(dst, '|')
		dst = appendUint(dst, uint64(p.NumProbes))
		return append(dst, '\n')
	}
	dst = appendUint(dst, uint64(p.SrcPort))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.DstPort))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.Ack))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.Seq))
	dst = append(dst, '|')
	dst = appendCSVOptions(dst, p)
	dst = append(dst, '|')
	dst = hex.AppendEncode(dst, p.Payload)
	dst = append(dst, '|')
	dst = appendFlag(dst, p.Flags&FlagSYN)
	dst = appendFlag(dst, p.Flags&FlagACK)
	dst = appendFlag(dst, p.Flags&FlagRST)
	dst = appendFlag(dst, p.Flags&FlagFIN)
	dst = appendUint(dst, uint64(p.Window))
	dst = append(dst, '|')
	if !p.Probed {
		return append(dst, "false|||||\n"...)
	}
	dst = append(dst, "true|"...)
	dst = append(dst, p.Method.String()...)
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.UserID))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.ProbeAck))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.ProbeSeq))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(p.NumProbes))
	return append(dst, '\n')
}

// appendFlag appends "1|" for a set flag bit and "0|" otherwise.
func appendFlag(dst []byte, bit uint8) []byte {
	if bit != 0 {
		return append(dst, '1', '|')
	}
	return append(dst, '0', '|')
}

// appendCSVOptions appends the options column: Spoki's names joined by ':'
// in the order Spoki's hash map yields them, which on every captured row is
// the reverse of first on-wire appearance (Linux `mss,sackOK,TS,nop,ws` →
// `window_scale:timestamp:sack_permitted:mss`). Each name appears once
// (several unknown kinds make one `other`), NOP and EOL are skipped.
func appendCSVOptions(dst []byte, p *Packet) []byte {
	// One pass notes each name's first appearance (seen is a bitset of
	// name indexes, order the names in that order); the names are then
	// written last first.
	var order [6]int8
	var seen uint8
	k := 0
	for _, kind := range p.Options[:min(int(p.NumOptions), MaxOptions)] {
		_, ni := csvOptionName(kind)
		if ni < 0 || seen&(1<<ni) != 0 {
			continue
		}
		seen |= 1 << ni
		order[k] = int8(ni)
		k++
	}
	var ws [len(csvOptionWords[0])]*word
	sep := 0 // the first name written has no ':' before it
	for i := k - 1; i >= 0; i-- {
		ws[k-1-i] = &csvOptionWords[sep][order[i]]
		sep = 1
	}
	return appendWords(dst, ws[:k])
}

// csvOptionWords holds csvOptionName's names by index, without and with a
// ':' before them.
var csvOptionWords = func() (t [2][6]word) {
	for i, name := range [6]string{"mss", "window_scale", "sack_permitted", "sack", "timestamp", "other"} {
		t[0][i], t[1][i] = newWord(name), newWord(":"+name)
	}
	return t
}()

// AppendReplyRow appends r as one reply-log row ending in '\n': start time in
// seconds and microseconds (not zero-padded, as Spoki writes it), method,
// userid, num probes, and the reply's addresses and ports.
func AppendReplyRow(dst []byte, r *Reply) []byte {
	dst = appendInt(dst, r.Time.Unix())
	dst = append(dst, '|')
	dst = appendInt(dst, int64(r.Time.Nanosecond()/1000))
	dst = append(dst, '|')
	dst = append(dst, r.Method.String()...)
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(r.UserID))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(r.NumProbes))
	dst = append(dst, '|')
	dst = appendAddr(dst, r.Src)
	dst = append(dst, '|')
	dst = appendAddr(dst, r.Dst)
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(r.SrcPort))
	dst = append(dst, '|')
	dst = appendUint(dst, uint64(r.DstPort))
	return append(dst, '\n')
}

// rowParser parses the '|'-separated columns of one row, remembering the
// first error so that the field parsers can be called in a row.
type rowParser struct {
	format string
	header []string
	cols   []string
	err    error
}

// newRowParser splits line (one trailing "\n" or "\r\n" removed) into
// columns and checks their count.
func newRowParser(format, header, line string, want int) *rowParser {
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	rp := &rowParser{format: format, header: strings.Split(header, "|"), cols: strings.Split(line, "|")}
	if len(rp.cols) != want {
		rp.err = fmt.Errorf("%w: %s row has %d columns, want %d", ErrMalformedRow, format, len(rp.cols), want)
	}
	return rp
}

// fail records a bad value in column i.
func (rp *rowParser) fail(i int, why error) {
	if rp.err == nil {
		rp.err = fmt.Errorf("%w: %s row column %d (%s) %q: %w", ErrMalformedRow, rp.format, i+1, rp.header[i], rp.cols[i], why)
	}
}

func (rp *rowParser) uint(i, bits int) uint64 {
	if rp.err != nil {
		return 0
	}
	v, err := strconv.ParseUint(rp.cols[i], 10, bits)
	if err != nil {
		rp.fail(i, err.(*strconv.NumError).Err)
	}
	return v
}

func (rp *rowParser) int64(i int) int64 {
	if rp.err != nil {
		return 0
	}
	v, err := strconv.ParseInt(rp.cols[i], 10, 64)
	if err != nil {
		rp.fail(i, err.(*strconv.NumError).Err)
	}
	return v
}

func (rp *rowParser) addr(i int) netip.Addr {
	if rp.err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(rp.cols[i])
	if err != nil {
		rp.fail(i, errors.New("not an IP address"))
	}
	return a
}

// choice returns the index of column i's value in values.
func (rp *rowParser) choice(i int, values ...string) int {
	if rp.err != nil {
		return 0
	}
	for k, v := range values {
		if rp.cols[i] == v {
			return k
		}
	}
	rp.fail(i, fmt.Errorf("want one of %q", values))
	return 0
}

func (rp *rowParser) bit(i int, bit uint8) uint8 {
	if rp.choice(i, "0", "1") == 1 {
		return bit
	}
	return 0
}

func (rp *rowParser) payload(i int) []byte {
	if rp.err != nil || rp.cols[i] == "" {
		return nil
	}
	b, err := hex.DecodeString(rp.cols[i])
	if err != nil {
		rp.fail(i, err)
	}
	return b
}

func (rp *rowParser) method(i int) Method {
	if rp.err != nil || rp.cols[i] == "" {
		return MethodNone
	}
	for m := MethodSYNACK; m <= lastMethod; m++ {
		if rp.cols[i] == m.String() {
			return m
		}
	}
	rp.fail(i, errors.New("unknown method"))
	return MethodNone
}

// options parses Spoki's options column back into wire-order kinds: the
// column lists names in reverse order of appearance, so the kinds are
// stored reversed, which makes AppendRawRow reproduce the column. Values
// (MSS, window scale) are not in the log: MSS stays 0 and WScale is 0 when
// window_scale is listed.
func (rp *rowParser) options(i int, p *Packet) {
	if rp.err != nil || rp.cols[i] == "" {
		return
	}
	names := strings.Split(rp.cols[i], ":")
	if len(names) > MaxOptions {
		rp.fail(i, errors.New("too many options"))
		return
	}
	for k, name := range names {
		var kind uint8
		switch name {
		case "mss":
			kind = optMSS
		case "window_scale":
			kind = optWScale
			p.WScale = 0
		case "sack_permitted":
			kind = optSACKPerm
		case "sack":
			kind = optSACK
		case "timestamp":
			kind = optTimestamp
		case "other":
			kind = optOther
		default:
			rp.fail(i, fmt.Errorf("unknown option %q", name))
			return
		}
		p.Options[len(names)-1-k] = kind
	}
	p.NumOptions = uint8(len(names))
}

// probe parses the probed column at i and the reaction columns after it:
// method, userid, then (TCP only) probe anum and probe snum, then num
// probes. An unprobed row must leave them all empty.
func (rp *rowParser) probe(i int, p *Packet) {
	p.Probed = rp.choice(i, "false", "true") == 1
	if rp.err != nil {
		return
	}
	if !p.Probed {
		for k := i + 1; k < len(rp.cols); k++ {
			if rp.cols[k] != "" {
				rp.fail(k, errors.New("set on an unprobed row"))
				return
			}
		}
		return
	}
	p.Method = rp.method(i + 1)
	p.UserID = uint32(rp.uint(i+2, 32))
	if p.Proto == ProtoTCP {
		p.ProbeAck = uint32(rp.uint(i+3, 32))
		p.ProbeSeq = uint32(rp.uint(i+4, 32))
	}
	p.NumProbes = uint8(rp.uint(len(rp.cols)-1, 8))
}

// ParseRawRow parses one raw-log row (a trailing newline is allowed) in any
// of the three formats, picked by the proto column. Its Time has millisecond
// precision, in UTC. Errors wrap ErrMalformedRow and name the column.
func ParseRawRow(line string) (Packet, error) {
	p := Packet{WScale: -1}
	// The proto column is the sixth in every format.
	proto, want := ProtoTCP, rawTCPColumns
	if cols := strings.SplitN(line, "|", 7); len(cols) >= 7 {
		switch cols[5] {
		case "udp":
			proto, want = ProtoUDP, rawOtherColumns
		case "icmp":
			proto, want = ProtoICMP, rawOtherColumns
		}
	}
	rp := newRowParser("raw "+proto.String(), RawHeaderFor(proto), line, want)
	p.Time = time.UnixMilli(rp.int64(0)).UTC()
	p.Src = rp.addr(1)
	p.Dst = rp.addr(2)
	p.IPID = uint16(rp.uint(3, 16))
	p.TTL = uint8(rp.uint(4, 8))
	p.Proto = Proto(rp.choice(5, "tcp", "udp", "icmp") + 1)
	switch proto {
	case ProtoTCP:
		p.SrcPort = uint16(rp.uint(6, 16))
		p.DstPort = uint16(rp.uint(7, 16))
		p.Ack = uint32(rp.uint(8, 32))
		p.Seq = uint32(rp.uint(9, 32))
		rp.options(10, &p)
		p.Payload = rp.payload(11)
		p.Flags = rp.bit(12, FlagSYN) | rp.bit(13, FlagACK) | rp.bit(14, FlagRST) | rp.bit(15, FlagFIN)
		p.Window = uint16(rp.uint(16, 16))
		rp.probe(17, &p)
	case ProtoUDP:
		p.SrcPort = uint16(rp.uint(6, 16))
		p.DstPort = uint16(rp.uint(7, 16))
		p.Payload = rp.payload(8)
		rp.probe(9, &p)
	case ProtoICMP:
		p.ICMPType = uint8(rp.uint(6, 8))
		p.ICMPCode = uint8(rp.uint(7, 8))
		p.Payload = rp.payload(8)
		rp.probe(9, &p)
	}
	if rp.err != nil {
		return Packet{}, rp.err
	}
	p.PayloadLen = len(p.Payload)
	return p, nil
}

// ParseReplyRow parses one reply-log row (a trailing newline is allowed).
// Its Time has microsecond precision, in UTC. Errors wrap ErrMalformedRow and
// name the column.
func ParseReplyRow(line string) (Reply, error) {
	rp := newRowParser("reply", ReplyHeader, line, replyColumns)
	var r Reply
	sec := rp.int64(0)
	usec := rp.uint(1, 32)
	if rp.err == nil && usec >= 1e6 {
		rp.fail(1, errors.New("not below 1000000"))
	}
	r.Time = time.Unix(sec, int64(usec)*1000).UTC()
	r.Method = rp.method(2)
	r.UserID = uint32(rp.uint(3, 32))
	r.NumProbes = uint8(rp.uint(4, 8))
	r.Src = rp.addr(5)
	r.Dst = rp.addr(6)
	r.SrcPort = uint16(rp.uint(7, 16))
	r.DstPort = uint16(rp.uint(8, 16))
	if rp.err != nil {
		return Reply{}, rp.err
	}
	return r, nil
}
