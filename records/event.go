package records

// This file holds the JSON-lines event log (docs/formats.md#event-log),
// field names in the style of Suricata's EVE JSON. The `syn` encoder runs once per SYN
// and is written by hand so that it allocates nothing; rarer events may use
// encoding/json for their type-specific parts.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/spoki-telescope/spoki/records/communityid"
)

// protoTCP is the `proto` value of TCP events, uppercase as in EVE JSON.
const protoTCP = "TCP"

// Origin is what every event says about where it was made: the sensor's
// name (the `host` field, as Suricata's sensor-name) and the seed of the
// flows' `community_id`.
type Origin struct {
	// Host is written as `host` on every event; empty writes none.
	Host string
	// CommunityIDSeed seeds the Community ID (0 unless every tool that is
	// joined on it uses another).
	CommunityIDSeed uint16
}

// origin is the process's Origin and its `host` member, pre-encoded.
type origin struct {
	Origin
	hostField []byte
}

var currentOrigin atomic.Pointer[origin]

// SetOrigin sets the Origin of every event encoded from now on (all the
// Append*Event functions). spoki run sets it once at start, from --host-name
// and --community-id-seed; until then events carry no host and seed 0.
func SetOrigin(o Origin) {
	v := &origin{Origin: o}
	if o.Host != "" {
		v.hostField = appendJSONString([]byte(`,"host":`), o.Host)
	}
	currentOrigin.Store(v)
}

// CurrentOrigin returns the Origin set by SetOrigin.
func CurrentOrigin() Origin {
	if o := currentOrigin.Load(); o != nil {
		return o.Origin
	}
	return Origin{}
}

// FlowID returns the `flow_id` of the TCP connection from remote to local
// whose first SYN carried sequence number isn (the client's initial
// sequence number): a 64-bit FNV-1a hash of the tuple and isn, mixed and
// cut to 51 bits as Suricata cuts its flow ids, so that JavaScript and
// JSON readers hold it exactly. The front end keeps no state per SYN, so
// the id is made from what every record of the connection carries: the SYN
// (its seq), the handshake ACK and the accepted connection (seq - 1), and
// the raw CSV log's rows; any tool can recompute it
// (docs/formats.md#flow-ids).
func FlowID(remote, local netip.AddrPort, isn uint32) uint64 {
	return flowID(communityid.ProtoTCP, remote, local, isn)
}

// appendCommunityID appends the `community_id` member of the flow from
// src to dest over ipProto (for ICMP the ports are the type and code),
// seeded by o.
func appendCommunityID(dst []byte, o *origin, ipProto uint8, src, dest netip.AddrPort) []byte {
	var seed uint16
	if o != nil {
		seed = o.CommunityIDSeed
	}
	dst = append(dst, `,"community_id":"`...)
	dst = communityid.Append(dst, seed, ipProto, src.Addr(), dest.Addr(), src.Port(), dest.Port())
	return append(dst, '"')
}

// FNV-1a's 64-bit parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnvPrime10 is fnvPrime to the 10th power (mod 2^64): FNV-1a over a zero
// byte is a multiply by the prime alone, so the ten zero bytes before an
// IPv4 address's 0xffff are one multiply.
var fnvPrime10 = func() uint64 {
	p := uint64(1)
	for range 10 {
		p *= fnvPrime
	}
	return p
}()

// flowID is FlowID for IP protocol proto: a UDP flow's id is its tuple's
// (isn 0), an ICMP echo's its tuple's with the echo's id and sequence.
// The hash is FNV-1a over proto, each end's 16-byte address (IPv4 as
// v4-mapped IPv6) and port, and isn, all in network byte order; the bytes
// are mixed in place from the addresses' arrays, and an IPv4 address's ten
// zero bytes in one multiply, which changes no value.
func flowID(proto uint8, remote, local netip.AddrPort, isn uint32) uint64 {
	h := (fnvOffset ^ uint64(proto)) * fnvPrime
	h = flowIDEnd(h, remote)
	h = flowIDEnd(h, local)
	h = (h ^ uint64(isn>>24)) * fnvPrime
	h = (h ^ uint64(isn>>16&0xff)) * fnvPrime
	h = (h ^ uint64(isn>>8&0xff)) * fnvPrime
	h = (h ^ uint64(isn&0xff)) * fnvPrime
	// FNV's low bits mix poorly; the SplitMix64 finaliser spreads every
	// input bit over the 51 kept.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h & (1<<51 - 1)
}

// flowIDEnd mixes one end of a flow (its address as 16 bytes, then its
// port) into the FNV-1a state h.
func flowIDEnd(h uint64, ap netip.AddrPort) uint64 {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		b := a.As16() // v4-mapped either way
		h *= fnvPrime10
		h = (h ^ 0xff) * fnvPrime
		h = (h ^ 0xff) * fnvPrime
		h = (h ^ uint64(b[12])) * fnvPrime
		h = (h ^ uint64(b[13])) * fnvPrime
		h = (h ^ uint64(b[14])) * fnvPrime
		h = (h ^ uint64(b[15])) * fnvPrime
	} else {
		for _, c := range a.As16() { // the zero Addr's are 16 zeros
			h = (h ^ uint64(c)) * fnvPrime
		}
	}
	p := ap.Port()
	h = (h ^ uint64(p>>8)) * fnvPrime
	return (h ^ uint64(p&0xff)) * fnvPrime
}

// appendEventHead appends the opening brace and the fields every event
// starts with: timestamp, event_type and, when src is valid, the flow
// (src_ip, src_port, dest_ip, dest_port, proto, flow_id from isn,
// community_id); then host when the Origin has one. It ends without a
// comma. kafkasink reads the event type and src_ip from this head, so its
// order is fixed.
func appendEventHead(dst []byte, t time.Time, eventType string, src, dest netip.AddrPort, isn uint32) []byte {
	return appendEventHeadProto(dst, t, eventType, src, dest, protoTCP, communityid.ProtoTCP, isn)
}

// appendEventHeadProto is appendEventHead for a flow of IP protocol
// ipProto, named proto in the event (TCP, UDP).
func appendEventHeadProto(dst []byte, t time.Time, eventType string, src, dest netip.AddrPort, proto string, ipProto uint8, isn uint32) []byte {
	o := currentOrigin.Load()
	dst = append(dst, `{"timestamp":"`...)
	dst = appendTimestamp(dst, t)
	if eventType == EventSYN { // once per SYN: no escaping to do
		dst = append(dst, `","event_type":"`+EventSYN+`"`...)
	} else {
		dst = append(dst, `","event_type":`...)
		dst = appendJSONString(dst, eventType)
	}
	if src.IsValid() {
		dst = append(dst, `,"src_ip":"`...)
		dst = appendAddr(dst, src.Addr())
		dst = append(dst, `","src_port":`...)
		dst = appendUint(dst, uint64(src.Port()))
		dst = append(dst, `,"dest_ip":"`...)
		dst = appendAddr(dst, dest.Addr())
		dst = append(dst, `","dest_port":`...)
		dst = appendUint(dst, uint64(dest.Port()))
		dst = append(dst, `,"proto":"`...)
		dst = append(dst, proto...)
		dst = append(dst, `","flow_id":`...)
		dst = appendUint(dst, flowID(ipProto, src, dest, isn))
		dst = appendCommunityID(dst, o, ipProto, src, dest)
	}
	if o != nil {
		dst = append(dst, o.hostField...)
	}
	return dst
}

// appendTimestamp appends t in UTC in the format of Suricata's EVE JSON:
// microseconds and a numeric zone (2026-11-25T11:03:32.123456+0000), the
// fraction fixed so that lines sort as text. Filebeat's Suricata module
// parses it with the layout 2006-01-02T15:04:05.999999999Z0700.
// It runs once per SYN: years 1 to 9999 take a path that computes the date
// once, from the Unix day (t.Date and t.Clock would each do it again; the
// last day's date is cached), and writes digits in pairs straight into dst;
// others go the general way.
func appendTimestamp(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if sec < minFastUnix || sec > maxFastUnix {
		return appendTimestampSlow(dst, t)
	}
	days := (sec - minFastUnix) / 86400 // from 0001-01-01, never negative here
	sod := int(sec - minFastUnix - days*86400)
	y, m, d := civilFromDaysCached(days)
	l := len(dst)
	if cap(dst)-l < TimestampLen {
		dst = slices.Grow(dst, TimestampLen)
	}
	dst = dst[:l+TimestampLen]
	b := dst[l : l+TimestampLen]
	put2(b[0:], y/100)
	put2(b[2:], y%100)
	b[4] = '-'
	put2(b[5:], m)
	b[7] = '-'
	put2(b[8:], d)
	b[10] = 'T'
	put2(b[11:], sod/3600)
	b[13] = ':'
	put2(b[14:], sod/60%60)
	b[16] = ':'
	put2(b[17:], sod%60)
	b[19] = '.'
	us := t.Nanosecond() / 1000
	put2(b[20:], us/10000)
	put2(b[22:], us/100%100)
	put2(b[24:], us%100)
	copy(b[26:], "+0000")
	return dst
}

// lastDay caches civilFromDays for the day of the last timestamp, packed
// as days<<32 | year<<16 | month<<8 | day (0, year 0, is empty): nearly
// every event of a run falls on the day of the one before. One word, so
// that concurrent encoders share it safely.
var lastDay atomic.Uint64

// civilFromDaysCached is civilFromDays through lastDay.
func civilFromDaysCached(days int64) (year, month, day int) {
	if c := lastDay.Load(); c != 0 && int64(c>>32) == days {
		return int(c >> 16 & 0xffff), int(c >> 8 & 0xff), int(c & 0xff)
	}
	year, month, day = civilFromDays(days)
	lastDay.Store(uint64(days)<<32 | uint64(year)<<16 | uint64(month)<<8 | uint64(day))
	return year, month, day
}

// TimestampLen is the length of an event timestamp in the fast range
// (years 1 to 9999).
const TimestampLen = 31

// TimestampLayout is the time.Parse layout of event timestamps.
const TimestampLayout = "2006-01-02T15:04:05.000000-0700"

// ParseTimestamp parses an event timestamp: the EVE format spoki writes
// (TimestampLayout) or, for logs written before it, RFC 3339.
func ParseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(TimestampLayout, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// Millis is a duration in milliseconds that always encodes with three
// decimals (5000.000), so that a dynamic mapping (Elasticsearch's) sees a
// float from the first event on and never truncates a later fraction into
// a long field.
type Millis float64

func (m Millis) appendTo(dst []byte) []byte { return strconv.AppendFloat(dst, float64(m), 'f', 3, 64) }

// MarshalJSON implements json.Marshaler.
func (m Millis) MarshalJSON() ([]byte, error) { return m.appendTo(nil), nil }

// EventTime is a time that encodes to JSON as an event timestamp and
// decodes from one (or from RFC 3339), for the time fields of events and
// their readers.
type EventTime struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t EventTime) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, TimestampLen+2)
	b = append(b, '"')
	b = appendTimestamp(b, t.Time)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *EventTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	tm, err := ParseTimestamp(s)
	if err != nil {
		return err
	}
	t.Time = tm
	return nil
}

// The range of appendTimestamp's fast path: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z.
const (
	minFastUnix = -62135596800
	maxFastUnix = 253402300799
)

// civilFromDays returns the proleptic Gregorian date of the day that is
// days after 0001-01-01 (days >= 0), by Howard Hinnant's civil_from_days.
func civilFromDays(days int64) (year, month, day int) {
	z := days + 306 // days from 0000-03-01, whose era starts a 400-year cycle
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = int(yoe + era*400)
	if month <= 2 {
		year++
	}
	return year, month, day
}

// put2 writes v (0 to 99) as two digits.
func put2(b []byte, v int) {
	b[0], b[1] = digitPairs[2*v], digitPairs[2*v+1]
}

// appendTimestampSlow is appendTimestamp for any time.
func appendTimestampSlow(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = appendPadded(dst, year, 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendPadded(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendPadded(dst, t.Nanosecond()/1000, 6)
	return append(dst, "+0000"...)
}

// appendPadded appends the non-negative v zero-padded to width digits.
func appendPadded(dst []byte, v, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	buf[i] = byte('0' + v)
	return append(dst, buf[i:]...)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json does
// minus the HTML escapes: quotes, backslashes and control characters are
// escaped, invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped so
// that the line is also valid JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendPrintable appends b as a JSON string in the style of Suricata's
// payload_printable: bytes 0x20..0x7e are kept (quote and backslash
// escaped), every other byte becomes '.'.
func appendPrintable(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c <= 0x7e:
			dst = append(dst, c)
		default:
			dst = append(dst, '.')
		}
	}
	return append(dst, '"')
}

// appendEventOptionName appends the `syn` event name of TCP option kind k: eol,
// nop, mss, wscale, sack_perm, sack, timestamp, or opt_N for other kinds.
func appendEventOptionName(dst []byte, k uint8) []byte {
	switch k {
	case optEOL:
		return append(dst, "eol"...)
	case optNOP:
		return append(dst, "nop"...)
	case optMSS:
		return append(dst, "mss"...)
	case optWScale:
		return append(dst, "wscale"...)
	case optSACKPerm:
		return append(dst, "sack_perm"...)
	case optSACK:
		return append(dst, "sack"...)
	case optTimestamp:
		return append(dst, "timestamp"...)
	}
	return appendUint(append(dst, "opt_"...), uint64(k))
}

// eventOptionWords holds every option kind's name as a JSON string
// (appendEventOptionName), without and with a ',' before it.
var eventOptionWords = func() (t [2][256]word) {
	for k := range t[0] {
		s := `"` + string(appendEventOptionName(nil, uint8(k))) + `"`
		t[0][k], t[1][k] = newWord(s), newWord(","+s)
	}
	return t
}()

// appendEventOptions appends the names of kinds (at most MaxOptions) as
// the members of a JSON array.
func appendEventOptions(dst []byte, kinds []uint8) []byte {
	var ws [MaxOptions]*word
	sep := 0 // no ',' before the first
	for i, k := range kinds {
		ws[i] = &eventOptionWords[sep][k]
		sep = 1
	}
	return appendWords(dst, ws[:len(kinds)])
}

// AppendSYNEvent appends the `syn` event of p as one JSON line ending in
// '\n'. Fields after the flow: userid; tcp {seq, window, ttl, ipid, options
// (names in wire order, NOP and EOL included), options_truncated (only when
// set), mss and wscale (only when present)}; fragment (true, only for an IP
// fragment); payload (base64, only when the SYN carried data); irregular and
// irregular_reasons (Irregular); scanner (Fingerprint). It allocates nothing
// beyond growing dst.
func AppendSYNEvent(dst []byte, p *Packet) []byte {
	dst = appendEventHead(dst, p.Time, EventSYN,
		netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), p.Seq)
	dst = append(dst, `,"userid":`...)
	dst = appendUint(dst, uint64(p.UserID))
	dst = append(dst, `,"tcp":{"seq":`...)
	dst = appendUint(dst, uint64(p.Seq))
	dst = append(dst, `,"window":`...)
	dst = appendUint(dst, uint64(p.Window))
	dst = append(dst, `,"ttl":`...)
	dst = appendUint(dst, uint64(p.TTL))
	dst = append(dst, `,"ipid":`...)
	dst = appendUint(dst, uint64(p.IPID))
	dst = append(dst, `,"options":[`...)
	dst = appendEventOptions(dst, p.Options[:min(int(p.NumOptions), MaxOptions)])
	dst = append(dst, ']')
	if p.OptionsTruncated {
		dst = append(dst, `,"options_truncated":true`...)
	}
	if p.MSS != 0 {
		dst = append(dst, `,"mss":`...)
		dst = appendUint(dst, uint64(p.MSS))
	}
	if p.WScale >= 0 {
		dst = append(dst, `,"wscale":`...)
		dst = appendInt(dst, int64(p.WScale))
	}
	dst = append(dst, '}')
	dst = appendFragmentPayload(dst, p)
	_, reasons := Irregular(p)
	return append(dst, synTails[reasons&(1<<len(reasonNames)-1)][Fingerprint(p)%numScanners]...)
}

// numScanners is the number of Scanner values.
const numScanners = ScannerNmap + 1

// synTails holds the end of a `syn` event for every set of irregular
// reasons and every scanner: irregular, irregular_reasons and scanner, the
// closing brace and the newline, so that the last fields are one append.
var synTails = func() (t [1 << len(reasonNames)][numScanners]string) {
	for r := range t {
		for s := range t[r] {
			b := append([]byte(`,"irregular":`), strconv.FormatBool(r != 0)...)
			b = append(b, `,"irregular_reasons":`...)
			b = Reasons(r).AppendJSON(b)
			b = append(b, `,"scanner":"`...)
			b = append(b, Scanner(s).String()...)
			t[r][s] = string(append(b, "\"}\n"...))
		}
	}
	return t
}()

// reservedKey reports whether k is a key of the session event's own fields,
// which a handler's Detail object must not take.
func reservedKey(k string) bool {
	switch k {
	case "", "timestamp", "event_type", "src_ip", "src_port", "dest_ip", "dest_port",
		"proto", "flow_id", "community_id", "host", "alert", "userid", "end", "app_proto", "payload", "payload_printable",
		"bytes_toserver", "bytes_toclient", "duration_ms", "error", "detail_error":
		return true
	}
	return false
}

// AppendSessionEvent appends the `session` event of s as one JSON line ending
// in '\n'. The timestamp is s.Flow.Accepted; src is the remote (scanner) end,
// dest the telescope. Fields after the flow: userid, end (timestamp),
// app_proto, payload (base64, "" if none), payload_printable, bytes_toserver,
// bytes_toclient, duration_ms (End - Accepted, float with microseconds),
// error (only when set), and s.Detail, encoded with encoding/json, under the
// key s.AppProto ("detail" when that is empty or clashes with a field above).
//
// If Detail cannot be encoded the line is still complete, without the object
// and with `detail_error` saying why, and the error is returned so that the
// caller can count it.
func AppendSessionEvent(dst []byte, s *Session) ([]byte, error) {
	f := &s.Flow
	dst = appendEventHead(dst, f.Accepted, EventSession, f.Remote, f.Local, f.ISN)
	dst = append(dst, `,"userid":`...)
	dst = strconv.AppendUint(dst, uint64(f.UserID), 10)
	dst = append(dst, `,"end":"`...)
	dst = appendTimestamp(dst, s.End)
	dst = append(dst, `","app_proto":`...)
	dst = appendJSONString(dst, s.AppProto)
	dst = append(dst, `,"payload":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, s.Payload)
	dst = append(dst, `","payload_printable":`...)
	dst = appendPrintable(dst, s.Payload)
	dst = append(dst, `,"bytes_toserver":`...)
	dst = strconv.AppendInt(dst, s.BytesToServer, 10)
	dst = append(dst, `,"bytes_toclient":`...)
	dst = strconv.AppendInt(dst, s.BytesToClient, 10)
	dst = append(dst, `,"duration_ms":`...)
	dst = Millis(float64(s.End.Sub(f.Accepted).Microseconds()) / 1e3).appendTo(dst)
	if s.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendJSONString(dst, s.Error)
	}
	var err error
	if s.Detail != nil {
		key := s.AppProto
		if reservedKey(key) {
			key = "detail"
		}
		var obj []byte
		if obj, err = json.Marshal(s.Detail); err == nil {
			dst = append(dst, ',')
			dst = appendJSONString(dst, key)
			dst = append(dst, ':')
			dst = append(dst, obj...)
		} else {
			err = fmt.Errorf("records: session event %s detail: %w", key, err)
			dst = append(dst, `,"detail_error":`...)
			dst = appendJSONString(dst, err.Error())
		}
	}
	return append(dst, "}\n"...), err
}

// errNotObject says that AppendEvent's fields did not encode to an object.
var errNotObject = errors.New("fields are not a JSON object")

// AppendEvent appends an event of any type as one JSON line ending in '\n',
// for the rarer types (two_phase, downloader, download, stats) that need no
// hand-written encoder: timestamp t and eventType; when flow is not nil its
// src_ip/src_port (Remote), dest_ip/dest_port (Local), proto and userid; then
// the members of fields, which must encode with encoding/json to a JSON
// object (nil adds nothing) and must not reuse the keys above. On error dst
// is returned unchanged.
func AppendEvent(dst []byte, eventType string, t time.Time, flow *Flow, fields any) ([]byte, error) {
	var obj []byte
	if fields != nil {
		var err error
		if obj, err = json.Marshal(fields); err != nil {
			return dst, fmt.Errorf("records: %s event: %w", eventType, err)
		}
		if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
			return dst, fmt.Errorf("records: %s event: %w", eventType, errNotObject)
		}
		obj = obj[1 : len(obj)-1]
	}
	if flow != nil {
		dst = appendEventHead(dst, t, eventType, flow.Remote, flow.Local, flow.ISN)
		dst = append(dst, `,"userid":`...)
		dst = strconv.AppendUint(dst, uint64(flow.UserID), 10)
	} else {
		dst = appendEventHead(dst, t, eventType, netip.AddrPort{}, netip.AddrPort{}, 0)
	}
	if len(obj) > 0 {
		dst = append(dst, ',')
		dst = append(dst, obj...)
	}
	return append(dst, "}\n"...), nil
}

// appendFragmentPayload appends the fragment (true, only for an IP
// fragment) and payload (base64, only when not empty) fields of the `syn`,
// `icmp` and `udp` events.
func appendFragmentPayload(dst []byte, p *Packet) []byte {
	if p.Fragment {
		dst = append(dst, `,"fragment":true`...)
	}
	if len(p.Payload) > 0 {
		dst = append(dst, `,"payload":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p.Payload)
		dst = append(dst, '"')
	}
	return dst
}

// appendIPFields appends the fields of `icmp` and `udp` events after the
// flow: userid (0 when spoki did not answer), probed, ttl, ipid, fragment
// (only when set), payload (base64, only when not empty) and payload_len
// (the length on the wire, before the cap).
func appendIPFields(dst []byte, p *Packet) []byte {
	dst = append(dst, `,"userid":`...)
	dst = strconv.AppendUint(dst, uint64(p.UserID), 10)
	dst = append(dst, `,"probed":`...)
	dst = strconv.AppendBool(dst, p.Probed)
	dst = append(dst, `,"ttl":`...)
	dst = strconv.AppendUint(dst, uint64(p.TTL), 10)
	dst = append(dst, `,"ipid":`...)
	dst = strconv.AppendUint(dst, uint64(p.IPID), 10)
	dst = appendFragmentPayload(dst, p)
	dst = append(dst, `,"payload_len":`...)
	return strconv.AppendInt(dst, int64(p.PayloadLen), 10)
}

// AppendICMPEvent appends the `icmp` event of the ICMP or ICMPv6 packet p
// as one JSON line ending in '\n': timestamp, event_type, src_ip, dest_ip,
// proto (`ICMP` or `IPv6-ICMP`), the fields of appendIPFields (payload is
// what follows the 8-byte ICMP header) and icmp {type, code, and for echo
// requests and replies id and seq}. It allocates nothing beyond growing dst.
func AppendICMPEvent(dst []byte, p *Packet) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = appendTimestamp(dst, p.Time)
	dst = append(dst, `","event_type":"`+EventICMP+`","src_ip":"`...)
	dst = p.Src.AppendTo(dst)
	dst = append(dst, `","dest_ip":"`...)
	dst = p.Dst.AppendTo(dst)
	ipProto := uint8(communityid.ProtoICMPv6)
	if p.Src.Is4() {
		ipProto = communityid.ProtoICMP
		dst = append(dst, `","proto":"ICMP"`...)
	} else {
		dst = append(dst, `","proto":"IPv6-ICMP"`...)
	}
	// The flow of an ICMP message: type and code stand for the ports (as
	// in the Community ID), and an echo's id and sequence for the isn.
	src := netip.AddrPortFrom(p.Src, uint16(p.ICMPType))
	dest := netip.AddrPortFrom(p.Dst, uint16(p.ICMPCode))
	var rest uint32
	if isEcho(p) {
		rest = p.ICMPRest
	}
	dst = append(dst, `,"flow_id":`...)
	dst = strconv.AppendUint(dst, flowID(ipProto, src, dest, rest), 10)
	o := currentOrigin.Load()
	dst = appendCommunityID(dst, o, ipProto, src, dest)
	if o != nil {
		dst = append(dst, o.hostField...)
	}
	dst = appendIPFields(dst, p)
	dst = append(dst, `,"icmp":{"type":`...)
	dst = strconv.AppendUint(dst, uint64(p.ICMPType), 10)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendUint(dst, uint64(p.ICMPCode), 10)
	if isEcho(p) {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPRest>>16), 10)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, uint64(p.ICMPRest&0xffff), 10)
	}
	return append(dst, "}}\n"...)
}

// isEcho reports whether p is an echo request or reply (ICMP 8 and 0,
// ICMPv6 128 and 129), whose ICMPRest is an identifier and a sequence.
func isEcho(p *Packet) bool {
	if p.Src.Is4() {
		return p.ICMPType == 8 || p.ICMPType == 0
	}
	return p.ICMPType == 128 || p.ICMPType == 129
}

// AppendUDPEvent appends the `udp` event of p as one JSON line ending in
// '\n': the flow (proto `UDP`), the fields of appendIPFields, then fields,
// the members the service's parser wrote (udpreply.AppendFields: service
// and its object; nothing for a port without a service), which must be
// valid JSON members. It allocates nothing beyond growing dst.
func AppendUDPEvent(dst []byte, p *Packet, fields []byte) []byte {
	dst = appendEventHeadProto(dst, p.Time, EventUDP,
		netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), "UDP", communityid.ProtoUDP, 0)
	dst = appendIPFields(dst, p)
	if len(fields) > 0 {
		dst = append(dst, ',')
		dst = append(dst, fields...)
	}
	return append(dst, "}\n"...)
}
