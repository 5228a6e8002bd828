package scenarios

import (
	"fmt"
	"strconv"
	"strings"
)

// Expr is an integer expression of a packet line: numbers (decimal or 0x
// hex), references ($dst, $dport, $sport, $isn, $seq, $NAME.field) and the
// operators + - ^ & | << >> with parentheses. Values are computed in 64
// bits and cut to the field's width. Precedence, lowest first: |, ^, &,
// << >>, + -.
type Expr struct {
	op          string // "" for a leaf
	left, right *Expr
	num         uint64
	ref         string // without '$': "dst", "synack.seq"
	text        string // as written, for messages
}

// String returns the expression as written.
func (e *Expr) String() string { return e.text }

// Absolute reports whether e refers to a `$` name: such a sequence or
// acknowledgement number is absolute, a plain number relative.
func (e *Expr) Absolute() bool {
	if e == nil {
		return false
	}
	return e.ref != "" || e.left.Absolute() || e.right.Absolute()
}

// refs calls fn for every reference of e.
func (e *Expr) refs(fn func(string)) {
	if e == nil {
		return
	}
	if e.ref != "" {
		fn(e.ref)
	}
	e.left.refs(fn)
	e.right.refs(fn)
}

// Eval computes e, looking references up with lookup.
func (e *Expr) Eval(lookup func(ref string) (uint64, error)) (uint64, error) {
	if e.op == "" {
		if e.ref != "" {
			return lookup(e.ref)
		}
		return e.num, nil
	}
	l, err := e.left.Eval(lookup)
	if err != nil {
		return 0, err
	}
	r, err := e.right.Eval(lookup)
	if err != nil {
		return 0, err
	}
	switch e.op {
	case "+":
		return l + r, nil
	case "-":
		return l - r, nil
	case "^":
		return l ^ r, nil
	case "&":
		return l & r, nil
	case "|":
		return l | r, nil
	case "<<":
		return l << (r & 63), nil
	case ">>":
		return l >> (r & 63), nil
	}
	return 0, fmt.Errorf("unknown operator %q", e.op)
}

// exprLevels are the binary operators by precedence, lowest first.
var exprLevels = [][]string{{"|"}, {"^"}, {"&"}, {"<<", ">>"}, {"+", "-"}}

// exprParser parses an expression from a token slice.
type exprParser struct {
	toks []token
	pos  int
}

// parseExpr parses one expression starting at toks[*pos] and advances
// *pos past it.
func parseExpr(toks []token, pos *int) (*Expr, error) {
	p := exprParser{toks: toks, pos: *pos}
	e, err := p.level(0)
	if err != nil {
		return nil, err
	}
	*pos = p.pos
	return e, nil
}

// level parses the operators of exprLevels[i] and above.
func (p *exprParser) level(i int) (*Expr, error) {
	if i == len(exprLevels) {
		return p.atom()
	}
	left, err := p.level(i + 1)
	if err != nil {
		return nil, err
	}
	for p.pos < len(p.toks) && p.toks[p.pos].kind == tokPunct && contains(exprLevels[i], p.toks[p.pos].text) {
		op := p.toks[p.pos].text
		p.pos++
		right, err := p.level(i + 1)
		if err != nil {
			return nil, err
		}
		left = &Expr{op: op, left: left, right: right, text: left.text + op + right.text}
	}
	return left, nil
}

// atom parses a number, a reference or a parenthesised expression.
func (p *exprParser) atom() (*Expr, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("expression expected at end of line")
	}
	t := p.toks[p.pos]
	if t.kind == tokPunct && t.text == "(" {
		p.pos++
		e, err := p.level(0)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].text != ")" {
			return nil, fmt.Errorf("missing ) in expression %s", e.text)
		}
		p.pos++
		return &Expr{op: e.op, left: e.left, right: e.right, num: e.num, ref: e.ref, text: "(" + e.text + ")"}, nil
	}
	if t.kind != tokWord {
		return nil, fmt.Errorf("expression expected, got %s", t)
	}
	p.pos++
	if ref, ok := strings.CutPrefix(t.text, "$"); ok {
		if !validRef(ref) {
			return nil, fmt.Errorf("bad reference %s (want $name or $name.field)", t.text)
		}
		return &Expr{ref: ref, text: t.text}, nil
	}
	n, err := strconv.ParseUint(t.text, 0, 64)
	if err != nil {
		return nil, fmt.Errorf("bad number %s", t.text)
	}
	return &Expr{num: n, text: t.text}, nil
}

// validRef reports whether ref is NAME or NAME.FIELD with identifier
// characters.
func validRef(ref string) bool {
	name, field, dotted := strings.Cut(ref, ".")
	return validIdent(name) && (!dotted || validIdent(field))
}

// validIdent reports whether s is a non-empty run of letters, digits and
// underscores that does not start with a digit.
func validIdent(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
