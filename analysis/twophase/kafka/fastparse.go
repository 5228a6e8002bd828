package kafka

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// errFast is any line the fast decoder does not take; parseSYN then
// decodes it with encoding/json, which has the last word.
var errFast = errors.New("not in the fast form")

// parseSYNFast decodes a `syn` event without encoding/json: it walks the
// object's keys, reads the ones the detector needs and skips the others
// (so that fields added to the event later cost nothing but the skip).
// It takes only unescaped strings and plain integers, which is what
// records writes for these fields, and leaves everything else to the slow
// path. It allocates nothing.
func parseSYNFast(line []byte, p *records.Packet) error {
	d := scanner{b: bytes.TrimRight(line, "\r\n")}
	*p = records.Packet{Proto: records.ProtoTCP, Flags: records.FlagSYN, WScale: -1}
	var seen uint8
	const (
		sawTime = 1 << iota
		sawType
		sawSrc
		sawDst
	)
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "timestamp":
			s, err := d.str()
			if err != nil {
				return err
			}
			t, err := parseTimestamp(s)
			if err != nil {
				return err
			}
			p.Time, seen = t, seen|sawTime
		case "event_type":
			s, err := d.str()
			if err != nil || string(s) != records.EventSYN {
				return errFast
			}
			seen |= sawType
		case "src_ip", "dest_ip":
			s, err := d.str()
			if err != nil {
				return err
			}
			a, err := parseAddr(s)
			if err != nil {
				return errFast
			}
			if key[0] == 's' {
				p.Src, seen = a, seen|sawSrc
			} else {
				p.Dst, seen = a, seen|sawDst
			}
		case "src_port":
			return d.uint(&p.SrcPort)
		case "dest_port":
			return d.uint(&p.DstPort)
		case "userid":
			return d.uint(&p.UserID)
		case "tcp":
			return d.object(func(key []byte) error { return d.tcpField(key, p) })
		default:
			return d.skipUnless(key, topKeys)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if d.ws(); d.i != len(d.b) || seen != sawTime|sawType|sawSrc|sawDst {
		return errFast
	}
	p.Probed = p.UserID != 0
	return nil
}

// tcpField reads one key of the event's tcp object.
func (d *scanner) tcpField(key []byte, p *records.Packet) error {
	switch string(key) {
	case "seq":
		return d.uint(&p.Seq)
	case "window":
		return d.uint(&p.Window)
	case "ttl":
		return d.uint(&p.TTL)
	case "ipid":
		return d.uint(&p.IPID)
	case "mss":
		return d.uint(&p.MSS)
	case "wscale":
		var w uint8
		if err := d.uint(&w); err != nil || w > 127 {
			return errFast
		}
		p.WScale = int8(w)
	case "options_truncated":
		v, err := d.boolean()
		if err != nil {
			return err
		}
		p.OptionsTruncated = p.OptionsTruncated || v
	case "options":
		if d.sawOptions {
			return errFast // json would replace the list: let it
		}
		d.sawOptions = true
		return d.array(func() error {
			s, err := d.str()
			if err != nil {
				return err
			}
			k, ok := optionKind(s)
			if !ok {
				return errFast
			}
			if int(p.NumOptions) == records.MaxOptions {
				p.OptionsTruncated = true
				return nil
			}
			p.Options[p.NumOptions] = k
			p.NumOptions++
			return nil
		})
	default:
		return d.skipUnless(key, tcpKeys)
	}
	return nil
}

// The keys the decoders read. encoding/json matches keys without regard
// to case (Unicode's folding), so a key that folds to one of them but is
// not it goes to the slow path.
var (
	topKeys = []string{"timestamp", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "userid", "tcp"}
	tcpKeys = []string{"seq", "window", "ttl", "ipid", "options", "options_truncated", "mss", "wscale"}
)

// skipUnless skips the value of an unknown key.
func (d *scanner) skipUnless(key []byte, known []string) error {
	for _, k := range known {
		if bytes.EqualFold(key, []byte(k)) {
			return errFast
		}
	}
	return d.skip()
}

// optionKind maps an option name of the event to its kind.
func optionKind(s []byte) (uint8, bool) {
	switch string(s) {
	case "eol":
		return 0, true
	case "nop":
		return 1, true
	case "mss":
		return 2, true
	case "wscale":
		return 3, true
	case "sack_perm":
		return 4, true
	case "sack":
		return 5, true
	case "timestamp":
		return 8, true
	}
	if len(s) > 4 && string(s[:4]) == "opt_" {
		n := 0
		for _, c := range s[4:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
			if n > 255 {
				return 0, false
			}
		}
		return uint8(n), true
	}
	return 0, false
}

// parseAddr parses an address without allocating (netip.ParseAddr of a
// string conversion the compiler keeps on the stack).
func parseAddr(s []byte) (netip.Addr, error) {
	if len(s) > 64 {
		return netip.Addr{}, errFast
	}
	return netip.ParseAddr(string(s))
}

// scanner walks one JSON value at a time.
type scanner struct {
	b          []byte
	i          int
	sawOptions bool
}

func (d *scanner) ws() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\t' || d.b[d.i] == '\n' || d.b[d.i] == '\r') {
		d.i++
	}
}

func (d *scanner) expect(c byte) error {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != c {
		return errFast
	}
	d.i++
	return nil
}

func (d *scanner) peek() byte {
	d.ws()
	if d.i >= len(d.b) {
		return 0
	}
	return d.b[d.i]
}

// object calls field for each key, positioned at its value, which field
// must consume.
func (d *scanner) object(field func(key []byte) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		key, err := d.str()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return errFast
		}
	}
}

// array calls item for each element.
func (d *scanner) array(item func() error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	if d.peek() == ']' {
		d.i++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return nil
		default:
			return errFast
		}
	}
}

// str returns a string's bytes; escapes and control bytes go to the slow
// path.
func (d *scanner) str() ([]byte, error) {
	if err := d.expect('"'); err != nil {
		return nil, err
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], nil
		case c == '\\' || c < 0x20:
			return nil, errFast
		}
		d.i++
	}
	return nil, errFast
}

// uint reads a plain non-negative integer that fits T.
func (d *scanner) uint(v any) error {
	d.ws()
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == start || d.i-start > 1 && d.b[start] == '0' {
		return errFast
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return errFast
	}
	var bits int
	switch v.(type) {
	case *uint8:
		bits = 8
	case *uint16:
		bits = 16
	default:
		bits = 32
	}
	n, err := strconv.ParseUint(string(d.b[start:d.i]), 10, bits)
	if err != nil {
		return errFast
	}
	switch v := v.(type) {
	case *uint8:
		*v = uint8(n)
	case *uint16:
		*v = uint16(n)
	case *uint32:
		*v = uint32(n)
	}
	return nil
}

func (d *scanner) boolean() (bool, error) {
	d.ws()
	switch {
	case bytes.HasPrefix(d.b[d.i:], []byte("true")):
		d.i += 4
		return true, nil
	case bytes.HasPrefix(d.b[d.i:], []byte("false")):
		d.i += 5
		return false, nil
	}
	return false, errFast
}

// skip passes over one value of any kind.
func (d *scanner) skip() error {
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{':
		return d.object(func([]byte) error { return d.skip() })
	case c == '[':
		return d.array(d.skip)
	case c == 't' || c == 'f':
		_, err := d.boolean()
		return err
	case c == 'n':
		if bytes.HasPrefix(d.b[d.i:], []byte("null")) {
			d.i += 4
			return nil
		}
		return errFast
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return errFast
}

// number passes over a number of JSON's grammar:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *scanner) number() error {
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		start := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
		}
		return d.i - start
	}
	start := d.i
	if n := digits(); n == 0 || n > 1 && d.b[start] == '0' {
		return errFast
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return errFast
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return errFast
		}
	}
	return nil
}

// parseTimestamp reads the timestamp as records writes it (Suricata's
// 2026-11-25T11:03:32.123456+0000, or the RFC 3339 of older logs).
func parseTimestamp(s []byte) (time.Time, error) {
	t, err := records.ParseTimestamp(string(s))
	if err != nil {
		return time.Time{}, errFast
	}
	return t, nil
}
