package assemble

// This file reads the rows of Spoki's raw and scamper logs the way Spoki's
// CSVFile does: the header names the columns, each line is rstrip()ed and
// split on '|', and the values are zipped with the header (extra values
// dropped, missing ones absent). records.ParseRawRow and ParseReplyRow read
// the same rows, but they allocate about 1.2 kB in 11 allocations per row
// (1.5 µs), which alone would cap assemble below its 1M rows/s target, and
// they are stricter than the original (fixed column count). The parsers here
// work in place on the line bytes and allocate only for non-empty payloads;
// parse_test.go checks that they agree with records on every example row.

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
)

// Errors of the row parsers. Both make the row be skipped and counted.
var (
	// errMissingColumn: a column the row needs is not in the header or the
	// row is too short. The original skips such rows with a warning.
	errMissingColumn = errors.New("missing column")
	// errBadValue: a value does not parse. The original dies on it
	// (ValueError); assemble skips the row instead.
	errBadValue = errors.New("bad value")
)

// Raw-log columns that assemble reads, by name as in the header.
const (
	rcTS = iota
	rcSaddr
	rcDaddr
	rcIPID
	rcTTL
	rcProto
	rcSport
	rcDport
	rcAnum
	rcSnum
	rcOptions
	rcPayload
	rcWindow
	rcProbed
	rcMethod
	rcUserID
	rcProbeAnum
	rcProbeSnum
	rcNumProbes
	// The flag columns, in the order in which the original walks them
	// (fin, syn, rst, psh, ack, urg, ece, cwr, ns); Spoki writes only four.
	rcFlag0
	numRawCols = rcFlag0 + numFlags
)

// flagNames is the original's all_tcp_flags: the order in which flags are
// listed in the output.
var flagNames = [...]string{"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns"}

const numFlags = len(flagNames)

// Flag bits of event.flags: bit i is flagNames[i].
const (
	flagFIN uint16 = 1 << 0
	flagSYN uint16 = 1 << 1
	flagRST uint16 = 1 << 2
	flagACK uint16 = 1 << 4
)

var rawColNames = func() [numRawCols]string {
	n := [numRawCols]string{
		rcTS: "ts", rcSaddr: "saddr", rcDaddr: "daddr", rcIPID: "ipid", rcTTL: "ttl",
		rcProto: "proto", rcSport: "sport", rcDport: "dport", rcAnum: "anum",
		rcSnum: "snum", rcOptions: "options", rcPayload: "payload",
		rcWindow: "window size", rcProbed: "probed", rcMethod: "method",
		rcUserID: "userid", rcProbeAnum: "probe anum", rcProbeSnum: "probe snum",
		rcNumProbes: "num probes",
	}
	for i, f := range flagNames {
		n[rcFlag0+i] = f
	}
	return n
}()

// Scamper-log columns that assemble reads.
const (
	ccStartSec = iota
	ccStartUsec
	ccTimestamp
	ccMethod
	ccUserID
	ccNumProbes
	ccSaddr
	ccDaddr
	ccSport
	ccDport
	numConCols
)

var conColNames = [numConCols]string{
	ccStartSec: "start sec", ccStartUsec: "start usec", ccTimestamp: "timestamp",
	ccMethod: "method", ccUserID: "userid", ccNumProbes: "num probes",
	ccSaddr: "saddr", ccDaddr: "daddr", ccSport: "sport", ccDport: "dport",
}

// Transport protocols of a raw row.
const (
	protoTCP uint8 = iota + 1
	protoUDP
	protoICMP
)

// splitter cuts a line into fields without allocating: field i is
// line[start[i]:end[i]]. Only the first max fields are kept (zip with the
// header drops the rest).
type splitter struct {
	start, end []int
}

func (s *splitter) split(line []byte, max int) {
	// A plain loop: the fields are short, and bytes.IndexByte's set-up
	// per call costs more than it saves here.
	s.start, s.end = s.start[:0], s.end[:0]
	from := 0
	for i, c := range line {
		if c != '|' {
			continue
		}
		s.start = append(s.start, from)
		s.end = append(s.end, i)
		from = i + 1
		if len(s.start) == max {
			return
		}
	}
	s.start = append(s.start, from)
	s.end = append(s.end, len(line))
}

// columnIndex maps wanted column names to their position in header, -1 if
// absent. With duplicate names the last one wins, as in a Python dict.
func columnIndex(header []byte, names []string, idx []int) {
	for i := range idx {
		idx[i] = -1
	}
	pos := 0
	for col := range bytes.SplitSeq(header, []byte{'|'}) {
		for i, n := range names {
			if string(col) == n {
				idx[i] = pos
			}
		}
		pos++
	}
}

// rstrip removes trailing ASCII whitespace, as str.rstrip() does for the
// characters a log line can end with.
func rstrip(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}

// interner returns shared strings for the few values that repeat on every
// row (options lists, methods), so that rows do not allocate for them. It is
// capped: past maxInterned distinct values it allocates each time.
type interner map[string]string

const maxInterned = 4096

func (in interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < maxInterned {
		in[s] = s
	}
	return s
}

// pick splits line into ncols columns and loads the named columns:
// fields[k] is the column at position idx[k] and have[k] says whether the
// row has it (idx[k] < 0: the header lacks it).
func (sp *splitter) pick(line []byte, ncols int, idx []int, fields [][]byte, have []bool) {
	sp.split(line, ncols)
	for k, i := range idx {
		if i >= 0 && i < len(sp.start) {
			fields[k], have[k] = line[sp.start[i]:sp.end[i]], true
		} else {
			fields[k], have[k] = nil, false
		}
	}
}

// haveAll reports whether every one of cols is set in have.
func haveAll(have []bool, cols ...int) bool {
	for _, c := range cols {
		if !have[c] {
			return false
		}
	}
	return true
}

// rawParser parses raw-log rows under one file's header.
type rawParser struct {
	idx    [numRawCols]int
	ncols  int
	sp     splitter
	strs   interner
	fields [numRawCols][]byte
	have   [numRawCols]bool
}

func newRawParser(header []byte, strs interner) *rawParser {
	p := &rawParser{strs: strs}
	header = rstrip(header)
	columnIndex(header, rawColNames[:], p.idx[:])
	p.ncols = bytes.Count(header, []byte{'|'}) + 1
	return p
}

// parse fills ev from line (its line end included or not). ev.batch is left
// to the caller.
func (p *rawParser) parse(line []byte, ev *event) error {
	p.sp.pick(rstrip(line), p.ncols, p.idx[:], p.fields[:], p.have[:])
	f := &p.fields
	if !haveAll(p.have[:], rcTS, rcSaddr, rcDaddr, rcIPID, rcTTL, rcProto, rcProbed) {
		return errMissingColumn
	}
	ms, ok := parseInt(f[rcTS])
	if !ok {
		return errBadValue
	}
	// Packet time is floor(ts/1000) seconds: the milliseconds are lost.
	ev.ts = floorDiv(ms, 1000)
	var err error
	if ev.saddr, err = parseAddr(f[rcSaddr]); err != nil {
		return errBadValue
	}
	if ev.daddr, err = parseAddr(f[rcDaddr]); err != nil {
		return errBadValue
	}
	ipid, ok1 := parseUint(f[rcIPID], 16)
	ttl, ok2 := parseUint(f[rcTTL], 8)
	if !ok1 || !ok2 {
		return errBadValue
	}
	ev.ipid, ev.ttl = uint16(ipid), uint8(ttl)
	switch string(f[rcProto]) {
	case "tcp":
		ev.proto = protoTCP
	case "udp":
		ev.proto = protoUDP
	case "icmp":
		ev.proto = protoICMP
	default:
		return errBadValue
	}
	ev.flags, ev.options, ev.payload = 0, "", ""
	ev.sport, ev.dport, ev.snum, ev.anum, ev.window = 0, 0, 0, 0, 0
	switch ev.proto {
	case protoTCP:
		if !haveAll(p.have[:], rcSport, rcDport, rcSnum, rcAnum, rcWindow, rcPayload) {
			return errMissingColumn
		}
		sport, ok1 := parseUint(f[rcSport], 16)
		dport, ok2 := parseUint(f[rcDport], 16)
		snum, ok3 := parseUint(f[rcSnum], 32)
		anum, ok4 := parseUint(f[rcAnum], 32)
		win, ok5 := parseUint(f[rcWindow], 16)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return errBadValue
		}
		ev.sport, ev.dport, ev.snum, ev.anum, ev.window = uint16(sport), uint16(dport), uint32(snum), uint32(anum), uint16(win)
		for i := range numFlags {
			if p.have[rcFlag0+i] && len(f[rcFlag0+i]) == 1 && f[rcFlag0+i][0] == '1' {
				ev.flags |= 1 << i
			}
		}
		if p.have[rcOptions] {
			ev.options = p.strs.get(f[rcOptions])
		}
		if len(f[rcPayload]) > 0 {
			ev.payload = string(f[rcPayload])
		}
	case protoUDP:
		// UDP rows are read but never take part in phase matching.
		if !p.have[rcSport] || !p.have[rcDport] {
			return errMissingColumn
		}
		sport, ok1 := parseUint(f[rcSport], 16)
		dport, ok2 := parseUint(f[rcDport], 16)
		if !ok1 || !ok2 {
			return errBadValue
		}
		ev.sport, ev.dport = uint16(sport), uint16(dport)
	}
	ev.probed = string(f[rcProbed]) == "true"
	ev.method, ev.userid, ev.panum, ev.psnum, ev.nprobes = "", 0, 0, 0, 0
	ev.conf, ev.confUs = false, 0
	if ev.probed {
		if !haveAll(p.have[:], rcMethod, rcUserID, rcProbeAnum, rcProbeSnum, rcNumProbes) {
			return errMissingColumn
		}
		uid, ok1 := parseUint(f[rcUserID], 32)
		pa, ok2 := parseUint(f[rcProbeAnum], 32)
		ps, ok3 := parseUint(f[rcProbeSnum], 32)
		np, ok4 := parseInt(f[rcNumProbes])
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return errBadValue
		}
		ev.method = p.strs.get(f[rcMethod])
		ev.userid, ev.panum, ev.psnum, ev.nprobes = uint32(uid), uint32(pa), uint32(ps), np
	}
	return nil
}

// conParser parses scamper-log rows under one file's header.
type conParser struct {
	idx    [numConCols]int
	ncols  int
	sp     splitter
	strs   interner
	fields [numConCols][]byte
	have   [numConCols]bool
}

func newConParser(header []byte, strs interner) *conParser {
	p := &conParser{strs: strs}
	header = rstrip(header)
	columnIndex(header, conColNames[:], p.idx[:])
	p.ncols = bytes.Count(header, []byte{'|'}) + 1
	return p
}

// parse fills c from line. c.batch is left to the caller.
func (p *conParser) parse(line []byte, c *confirmation) error {
	p.sp.pick(rstrip(line), p.ncols, p.idx[:], p.fields[:], p.have[:])
	f := &p.fields
	if !haveAll(p.have[:], ccMethod, ccUserID, ccNumProbes, ccSaddr, ccDaddr, ccSport, ccDport) {
		return errMissingColumn
	}
	switch {
	case p.have[ccStartSec] && p.have[ccStartUsec]:
		sec, ok1 := parseInt(f[ccStartSec])
		usec, ok2 := parseInt(f[ccStartUsec])
		if !ok1 || !ok2 {
			return errBadValue
		}
		c.us = sec*1e6 + usec
	case p.have[ccTimestamp]:
		// Legacy files carry the time in (fractional) seconds.
		v, err := strconv.ParseFloat(string(f[ccTimestamp]), 64)
		if err != nil {
			return errBadValue
		}
		c.us = int64(v * 1e6)
	default:
		return errMissingColumn
	}
	var err error
	if c.src, err = parseAddr(f[ccSaddr]); err != nil {
		return errBadValue
	}
	if c.dst, err = parseAddr(f[ccDaddr]); err != nil {
		return errBadValue
	}
	uid, ok1 := parseUint(f[ccUserID], 32)
	sport, ok2 := parseUint(f[ccSport], 16)
	dport, ok3 := parseUint(f[ccDport], 16)
	if _, ok4 := parseInt(f[ccNumProbes]); !ok1 || !ok2 || !ok3 || !ok4 {
		return errBadValue
	}
	c.userid, c.sport, c.dport = uint32(uid), uint16(sport), uint16(dport)
	c.method = p.strs.get(f[ccMethod])
	return nil
}

// parseUint parses a decimal that fits in bits.
func parseUint(b []byte, bits uint) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		nv := v*10 + uint64(c-'0')
		if nv < v || v > (1<<64-1)/10 {
			return 0, false
		}
		v = nv
	}
	if bits < 64 && v >= 1<<bits {
		return 0, false
	}
	return v, true
}

// parseInt parses a decimal with an optional sign.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg, b = b[0] == '-', b[1:]
	}
	v, ok := parseUint(b, 63)
	if !ok {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// parseAddr parses an IP address. Dotted IPv4 is parsed by hand because
// netip.ParseAddr needs a string, and converting would allocate per row.
func parseAddr(b []byte) (netip.Addr, error) {
	var a [4]byte
	n, octet, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && octet == 0 {
				return netip.ParseAddr(string(b)) // leading zero: let netip reject it
			}
			octet = octet*10 + int(c-'0')
			digits++
			if octet > 255 || digits > 3 {
				return netip.ParseAddr(string(b))
			}
		case c == '.':
			if digits == 0 || n == 3 {
				return netip.ParseAddr(string(b))
			}
			a[n] = byte(octet)
			n, octet, digits = n+1, 0, 0
		default:
			return netip.ParseAddr(string(b))
		}
	}
	if n != 3 || digits == 0 {
		return netip.ParseAddr(string(b))
	}
	a[3] = byte(octet)
	return netip.AddrFrom4(a), nil
}
