package assemble

// The output records, encoded byte for byte as Python's json.dumps writes
// the original's dicts: separators ", " and ": ",
// ensure_ascii, and the key orders of the original's to_dict methods.

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Record is one assembled record of a batch: a lone SYN, an acked SYN or a
// two-phase event.
type Record struct {
	ts  int64
	tag uint8
	r   rec
}

// TS returns the record's time: the second of its anchor packet (the
// irregular SYN, or the regular SYN for `rsyn` and `rsyn (acked)`).
func (r *Record) TS() int64 { return r.ts }

// Tag returns the record's tag as written in the output (`isyn`, `rsyn`,
// `isyn (acked)`, `rsyn (acked)`, `two-phase (no ack)`, `two-phase`).
func (r *Record) Tag() string { return tagNames[r.tag] }

// AppendJSON appends the record as the original writes it, without the
// line end.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"ts": `...)
	dst = strconv.AppendInt(dst, r.ts, 10)
	if r.tag == tagISYN || r.tag == tagRSYN {
		// The lone SYNs are built with the slots first and the tag last.
		dst = appendSlots(dst, &r.r)
		dst = append(dst, `, "tag": "`...)
		dst = append(dst, tagNames[r.tag]...)
		return append(dst, `"}`...)
	}
	dst = append(dst, `, "tag": "`...)
	dst = append(dst, tagNames[r.tag]...)
	dst = append(dst, '"')
	dst = appendSlots(dst, &r.r)
	return append(dst, '}')
}

func appendSlots(dst []byte, r *rec) []byte {
	dst = append(dst, `, "isyn": `...)
	dst = appendSlot(dst, r.isyn)
	dst = append(dst, `, "iack": `...)
	dst = appendSlot(dst, r.iack)
	dst = append(dst, `, "rsyn": `...)
	dst = appendSlot(dst, r.rsyn)
	dst = append(dst, `, "rack": `...)
	return appendSlot(dst, r.rack)
}

// appendSlot writes {"trigger": PKT, "reaction": REQ|null}; the probe
// confirmation is not written.
func appendSlot(dst []byte, ev *event) []byte {
	if ev == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"trigger": {"timestamp": `...)
	dst = strconv.AppendInt(dst, ev.ts*1000, 10)
	dst = append(dst, `, "saddr": "`...)
	dst = ev.saddr.AppendTo(dst)
	dst = append(dst, `", "daddr": "`...)
	dst = ev.daddr.AppendTo(dst)
	dst = append(dst, `", "ipid": `...)
	dst = strconv.AppendUint(dst, uint64(ev.ipid), 10)
	dst = append(dst, `, "ttl": `...)
	dst = strconv.AppendUint(dst, uint64(ev.ttl), 10)
	dst = append(dst, `, "proto": "tcp", "payload": {"sport": `...)
	dst = strconv.AppendUint(dst, uint64(ev.sport), 10)
	dst = append(dst, `, "dport": `...)
	dst = strconv.AppendUint(dst, uint64(ev.dport), 10)
	dst = append(dst, `, "snum": `...)
	dst = strconv.AppendUint(dst, uint64(ev.snum), 10)
	dst = append(dst, `, "anum": `...)
	dst = strconv.AppendUint(dst, uint64(ev.anum), 10)
	dst = append(dst, `, "window_size": `...)
	dst = strconv.AppendUint(dst, uint64(ev.window), 10)
	dst = append(dst, `, "flags": [`...)
	first := true
	for i, name := range flagNames {
		if ev.flags&(1<<i) != 0 {
			if !first {
				dst = append(dst, ", "...)
			}
			dst = append(dst, '"')
			dst = append(dst, name...)
			dst = append(dst, '"')
			first = false
		}
	}
	dst = append(dst, `], "options": [`...)
	if ev.options != "" {
		opts := ev.options
		for {
			name, rest, more := strings.Cut(opts, ":")
			dst = appendPyString(dst, name)
			if !more {
				break
			}
			dst = append(dst, ", "...)
			opts = rest
		}
	}
	dst = append(dst, `], "payload": `...)
	dst = appendPyString(dst, ev.payload)
	dst = append(dst, `}}, "reaction": `...)
	if !ev.probed {
		return append(dst, "null}"...)
	}
	// The probe request is the swapped view of the row.
	dst = append(dst, `{"saddr": "`...)
	dst = ev.daddr.AppendTo(dst)
	dst = append(dst, `", "daddr": "`...)
	dst = ev.saddr.AppendTo(dst)
	dst = append(dst, `", "sport": `...)
	dst = strconv.AppendUint(dst, uint64(ev.dport), 10)
	dst = append(dst, `, "dport": `...)
	dst = strconv.AppendUint(dst, uint64(ev.sport), 10)
	dst = append(dst, `, "anum": `...)
	dst = strconv.AppendUint(dst, uint64(ev.panum), 10)
	dst = append(dst, `, "snum": `...)
	dst = strconv.AppendUint(dst, uint64(ev.psnum), 10)
	dst = append(dst, `, "userid": `...)
	dst = strconv.AppendUint(dst, uint64(ev.userid), 10)
	dst = append(dst, `, "method": `...)
	dst = appendPyString(dst, ev.method)
	dst = append(dst, `, "num_probes": `...)
	dst = strconv.AppendInt(dst, ev.nprobes, 10)
	return append(dst, `, "payload": ""}}`...)
}

const hexDigits = "0123456789abcdef"

// appendPyString appends s as json.dumps writes a str with ensure_ascii:
// `"` and `\` escaped, \n \r \t \b \f by name, other control characters and
// everything beyond ASCII as \uXXXX (surrogate pairs above the BMP).
// Invalid UTF-8 (which the original could not have read) becomes U+FFFD.
func appendPyString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = appendU(dst, rune(c))
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if r >= 0x10000 {
			r -= 0x10000
			dst = appendU(dst, 0xd800+(r>>10))
			dst = appendU(dst, 0xdc00+(r&0x3ff))
			continue
		}
		dst = appendU(dst, r)
	}
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
