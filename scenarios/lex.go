package scenarios

import (
	"fmt"
	"strconv"
	"strings"
)

// tokKind is the kind of a lexical token.
type tokKind int

const (
	tokWord   tokKind = iota + 1 // a run of word characters: S., 1460, $synack.seq, tcp.ipid, 2s
	tokString                    // a double-quoted string, unquoted
	tokPunct                     // < > ( ) , = != ~ + - ^ & | << >>
)

// token is one lexical token of a line.
type token struct {
	kind tokKind
	text string // the word, the unquoted string or the punctuation
}

// String returns the token as written, for messages.
func (t token) String() string {
	if t.kind == tokString {
		return strconv.Quote(t.text)
	}
	return t.text
}

// isWordByte reports whether c continues a word. Words take everything but
// white space, quotes and the punctuation the grammar uses, so that flags
// ("S."), addresses ("[2001:db8::1]:80"), durations ("1.5s") and dotted
// keys ("tcp.ipid") are one token each.
func isWordByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '"', '<', '>', '(', ')', ',', '=', '!', '~', '+', '-', '^', '&', '|', '#':
		return false
	}
	return c > ' ' && c < 0x7f
}

// lexLine splits the text of one line (without its time column) into
// tokens, dropping a trailing comment (`//` or `#` outside a string).
func lexLine(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(s[i:], "//"):
			return toks, nil
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string starting at column %d", i+1)
			}
			u, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad string %s at column %d: %v", s[i:j+1], i+1, err)
			}
			toks = append(toks, token{tokString, u})
			i = j + 1
		case strings.HasPrefix(s[i:], "<<"), strings.HasPrefix(s[i:], ">>"), strings.HasPrefix(s[i:], "!="):
			toks = append(toks, token{tokPunct, s[i : i+2]})
			i += 2
		case strings.IndexByte("<>(),=~+-^&|", c) >= 0:
			toks = append(toks, token{tokPunct, s[i : i+1]})
			i++
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q at column %d", c, i+1)
		}
	}
	return toks, nil
}

// stripComment returns s without a trailing `//` or `#` comment outside a
// string, and the comment's text (without the marker).
func stripComment(s string) (code, comment string) {
	inString := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == '#':
			return s[:i], s[i+1:]
		case !inString && c == '/' && i+1 < len(s) && s[i+1] == '/':
			return s[:i], s[i+2:]
		}
	}
	return s, ""
}
