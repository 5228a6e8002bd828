package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// termSafe escapes what a terminal would act on in a line of attacker
// bytes (a URL, a payload, a server's reason text): C0 controls, DEL and
// the bytes of invalid UTF-8 become \xNN, C1 controls (U+0080..U+009F,
// which some terminals read as CSI and OSC) and the bidirectional
// overrides (which reorder what is shown) become \uNNNN, and a backslash
// becomes \\, so that the escaped text reads back unambiguously. Every
// line that the CLI prints for a person goes through it; the JSON and CSV
// outputs have their own quoting and do not.
func termSafe(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		return s // the common case: printable ASCII, no copy
	}
	var sb strings.Builder
	sb.Grow(len(s) + 16)
	sb.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
			i++
			continue
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
			i++
			continue
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&sb, `\x%02x`, c)
		case r >= 0x80 && r <= 0x9f, isBidiControl(r):
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	return sb.String()
}

// isBidiControl reports the formatting characters that reorder text on
// display (Unicode's Bidi_Control).
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
