package scenarios

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wantFailMarker opens the comment that names a scenario's expected failure.
const wantFailMarker = "want-fail:"

// telescopeMarker opens the comment that lists the `spoki run` flags a
// scenario needs.
const telescopeMarker = "telescope:"

// builtinRefs are the references every packet line may use.
var builtinRefs = map[string]bool{"dst": true, "dport": true, "sport": true, "isn": true, "seq": true}

// captureFields are the fields of a captured packet ($NAME.field).
var captureFields = map[string]bool{"seq": true, "ack": true, "win": true, "ttl": true, "ipid": true, "sport": true, "dport": true, "len": true}

// Parse parses a scenario from src; name is used in messages. An include
// line is an error, since there is no file system to read it from: use
// ParseFile for files that include others.
func Parse(name string, src []byte) (*Script, error) {
	return parse(nil, name, src)
}

// ParseFile parses the scenario file name of fsys, with its includes
// (paths relative to the including file).
func ParseFile(fsys fs.FS, name string) (*Script, error) {
	src, err := readCapped(fsys, name)
	if err != nil {
		return nil, err
	}
	return parse(fsys, name, src)
}

// ParsePath parses the scenario file at an operating-system path, as given
// on the command line.
func ParsePath(p string) (*Script, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("scenarios: %s: %w", p, err)
	}
	internal := strings.TrimPrefix(filepath.ToSlash(abs), "/")
	// Messages name files as the user would: the top file as given,
	// included ones relative to the working directory.
	display := func(name string) string {
		if name == internal {
			return p
		}
		osName := "/" + filepath.FromSlash(name)
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, osName); err == nil {
				return rel
			}
		}
		return osName
	}
	s, err := ParseFile(os.DirFS("/"), internal)
	if s != nil {
		s.Name = p
		for _, st := range s.Steps {
			st.File = display(st.File)
		}
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		se.File = display(se.File)
	}
	return s, err
}

// readCapped reads a file of fsys, refusing files over maxFileBytes.
func readCapped(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("scenarios: read %s: %w", name, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("scenarios: %s: larger than %d bytes", name, maxFileBytes)
	}
	return b, nil
}

// parser holds the state of one script's parse, across includes.
type parser struct {
	fsys       fs.FS
	s          *Script
	defaultDst netip.AddrPort
	flow       *Flow
	flows      map[string]*Flow
	captures   map[string]int // capture name -> line
	file       string
	line       int
	depth      int
}

// errorf returns a SyntaxError at the current line.
func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{File: p.file, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// parse parses the top file.
func parse(fsys fs.FS, name string, src []byte) (*Script, error) {
	if len(src) > maxFileBytes {
		return nil, &SyntaxError{File: name, Line: 1, Msg: fmt.Sprintf("file larger than %d bytes", maxFileBytes)}
	}
	p := &parser{fsys: fsys, s: &Script{Name: name}, flows: map[string]*Flow{}, captures: map[string]int{}}
	if err := p.parseFile(name, src, true); err != nil {
		return nil, err
	}
	for _, f := range p.s.Flows {
		if f.Dst.Addr().Is4() && !p.s.Src4.IsValid() || f.Dst.Addr().Is6() && !p.s.Src6.IsValid() {
			return nil, &SyntaxError{File: name, Line: f.Line, Msg: fmt.Sprintf("flow %s to %s: no src address of its family (add `src ADDR`, usually through the include line)", f.Name, f.Dst)}
		}
	}
	return p.s, nil
}

// parseFile parses the lines of one file; top tells the script's own file
// (whose opening comment is the Doc) from an included one.
func (p *parser) parseFile(name string, src []byte, top bool) error {
	saveFile, saveLine := p.file, p.line
	defer func() { p.file, p.line = saveFile, saveLine }()
	p.file = name
	var doc []string
	inDoc := top
	for i, raw := range strings.Split(string(src), "\n") {
		p.line = i + 1
		code, comment := stripComment(raw)
		code = strings.TrimSpace(code)
		if c := strings.TrimSpace(comment); strings.HasPrefix(c, wantFailMarker) && top {
			p.s.WantFail = strings.TrimSpace(strings.TrimPrefix(c, wantFailMarker))
		}
		if c := strings.TrimSpace(comment); strings.HasPrefix(c, telescopeMarker) && top {
			p.s.Telescope = strings.Fields(strings.TrimPrefix(c, telescopeMarker))
		}
		if code == "" {
			if inDoc {
				if strings.TrimSpace(raw) == "" && len(doc) > 0 {
					inDoc = false
				} else if strings.TrimSpace(raw) != "" {
					doc = append(doc, strings.TrimSpace(comment))
				}
			}
			continue
		}
		inDoc = false
		if err := p.parseLine(code); err != nil {
			return err
		}
	}
	if top {
		p.s.Doc = strings.Join(doc, "\n")
	}
	return nil
}

// parseLine parses one line's code (comment removed, trimmed).
func (p *parser) parseLine(code string) error {
	var tm Time
	hasTime := false
	rest := code
	if c := code[0]; c == '+' || c == '.' || c >= '0' && c <= '9' {
		field, after, _ := strings.Cut(code, " ")
		if i := strings.IndexByte(field, '\t'); i >= 0 {
			field, after = code[:i], code[i+1:]
		}
		t, err := parseTime(field)
		if err != nil {
			return p.errorf("%v", err)
		}
		tm, hasTime, rest = t, true, strings.TrimSpace(after)
	}
	toks, err := lexLine(rest)
	if err != nil {
		return p.errorf("%v", err)
	}
	if len(toks) == 0 {
		return p.errorf("a time column needs a step after it")
	}
	first := toks[0]
	switch {
	case first.kind == tokPunct && (first.text == ">" || first.text == "<"):
		return p.parsePacketStep(code, tm, toks)
	case first.kind == tokWord && first.text == "expect":
		return p.parseExpect(code, tm, toks)
	case hasTime:
		return p.errorf("want `>`, `<` or `expect` after the time, got %s", first)
	case first.kind == tokWord:
		return p.parseDirective(toks)
	}
	return p.errorf("want a directive, `>`, `<` or `expect`, got %s", first)
}

// parseTime parses a time column: [+]SECONDS[...SECONDS].
func parseTime(field string) (Time, error) {
	var t Time
	body := field
	if b, ok := strings.CutPrefix(field, "+"); ok {
		t.Relative, body = true, b
	}
	from, to, isRange := strings.Cut(body, "...")
	secs := func(s string) (time.Duration, error) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > maxWithin.Seconds() || s == "" || strings.ContainsAny(s, "eEnNxX_") {
			return 0, fmt.Errorf("bad time %q (want seconds such as 0, +0, +.1, +1.5 or +0...2, at most %v)", field, maxWithin)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	var err error
	if t.At, err = secs(from); err != nil {
		return t, err
	}
	if isRange {
		if t.Upto, err = secs(to); err != nil {
			return t, err
		}
		if t.Upto <= t.At {
			return t, fmt.Errorf("bad time range %q: the end must be after the start", field)
		}
	}
	return t, nil
}

// parseDuration parses a `within` value: a Go duration ("2s", "500ms") or
// plain seconds.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || strings.ContainsAny(s, "eEnNxX_") {
			return 0, fmt.Errorf("bad duration %q (want e.g. 2s or 500ms)", s)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 || d > maxWithin {
		return 0, fmt.Errorf("duration %q out of range (0, %v]", s, maxWithin)
	}
	return d, nil
}

// parseDirective parses include, src, dst and flow lines.
func (p *parser) parseDirective(toks []token) error {
	word := toks[0].text
	args := toks[1:]
	switch word {
	case "include":
		if len(args) != 1 || args[0].kind == tokPunct {
			return p.errorf("want `include PATH`")
		}
		if p.fsys == nil {
			return p.errorf("include %s: no file system to read it from (use ParseFile)", args[0].text)
		}
		if p.depth >= maxIncludeDepth {
			return p.errorf("include %s: more than %d nested includes (a cycle?)", args[0].text, maxIncludeDepth)
		}
		name := path.Clean(path.Join(path.Dir(p.file), args[0].text))
		src, err := readCapped(p.fsys, name)
		if err != nil {
			return p.errorf("include %s: %v", args[0].text, err)
		}
		p.depth++
		defer func() { p.depth-- }()
		return p.parseFile(name, src, false)
	case "src":
		if len(args) != 1 {
			return p.errorf("want `src ADDR`")
		}
		a, err := netip.ParseAddr(args[0].text)
		if err != nil || a.Zone() != "" {
			return p.errorf("bad src address %s", args[0])
		}
		if a.Is4() {
			p.s.Src4 = a
		} else {
			p.s.Src6 = a
		}
		return nil
	case "dst":
		if len(args) != 1 {
			return p.errorf("want `dst ADDR:PORT` (IPv6 as [ADDR]:PORT)")
		}
		ap, err := parseAddrPort(args[0].text)
		if err != nil {
			return p.errorf("%v", err)
		}
		if f := p.flows["main"]; f != nil {
			return p.errorf("dst after the first packet of the implicit flow (line %d): declare a `flow` instead", f.Line)
		}
		p.defaultDst = ap
		return nil
	case "flow":
		return p.parseFlow(args)
	}
	return p.errorf("unknown directive %q (want include, src, dst or flow; steps start with a time, `>`, `<` or `expect`)", word)
}

// parseAddrPort parses ADDR:PORT with a port of 1 to 65535.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("bad address and port %q (want 198.51.100.7:80 or [2001:db8::7]:80, port 1-65535)", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// parseFlow parses `flow NAME [sport N] [isn EXPR] [dst ADDR:PORT]`.
func (p *parser) parseFlow(args []token) error {
	if len(args) == 0 || args[0].kind != tokWord || !validIdent(args[0].text) {
		return p.errorf("want `flow NAME [sport N] [isn EXPR] [dst ADDR:PORT]`")
	}
	name := args[0].text
	if f, ok := p.flows[name]; ok {
		if len(args) > 1 {
			return p.errorf("flow %s already declared at line %d; switch to it with `flow %s` alone", name, f.Line, name)
		}
		p.flow = f
		return nil
	}
	if len(p.s.Flows) >= maxFlows {
		return p.errorf("more than %d flows", maxFlows)
	}
	f := &Flow{Name: name, Dst: p.defaultDst, Line: p.line}
	for i := 1; i < len(args); {
		kw := args[i].text
		i++
		if i >= len(args) {
			return p.errorf("flow %s: %s needs a value", name, kw)
		}
		switch kw {
		case "sport":
			n, err := strconv.ParseUint(args[i].text, 0, 16)
			if err != nil || n == 0 {
				return p.errorf("flow %s: bad sport %s (want 1-65535)", name, args[i])
			}
			f.Sport = uint16(n)
			i++
		case "dst":
			ap, err := parseAddrPort(args[i].text)
			if err != nil {
				return p.errorf("flow %s: %v", name, err)
			}
			f.Dst = ap
			i++
		case "isn":
			e, err := parseExpr(args, &i)
			if err != nil {
				return p.errorf("flow %s: isn: %v", name, err)
			}
			var bad string
			e.refs(func(r string) {
				if r != "dst" && r != "dport" && r != "sport" && bad == "" {
					bad = r
				}
			})
			if bad != "" {
				return p.errorf("flow %s: isn may refer only to $dst, $dport and $sport, not $%s", name, bad)
			}
			f.ISN = e
		default:
			return p.errorf("flow %s: unknown field %s (want sport, isn or dst)", name, args[i-1])
		}
	}
	if !f.Dst.IsValid() {
		return p.errorf("flow %s has no destination: add `dst ADDR:PORT` to it or before it", name)
	}
	p.flows[name] = f
	p.s.Flows = append(p.s.Flows, f)
	p.flow = f
	return nil
}

// currentFlow returns the flow of a step, creating the implicit "main" one
// when none was declared.
func (p *parser) currentFlow() (*Flow, error) {
	if p.flow != nil {
		return p.flow, nil
	}
	if !p.defaultDst.IsValid() {
		return nil, p.errorf("no destination: add `dst ADDR:PORT` or a `flow` line before the first step")
	}
	f := &Flow{Name: "main", Dst: p.defaultDst, Line: p.line}
	p.flows["main"] = f
	p.s.Flows = append(p.s.Flows, f)
	p.flow = f
	return f, nil
}

// addStep appends a step, enforcing maxSteps.
func (p *parser) addStep(st *Step) error {
	if len(p.s.Steps) >= maxSteps {
		return p.errorf("more than %d steps", maxSteps)
	}
	p.s.Steps = append(p.s.Steps, st)
	return nil
}

// newStep returns a step of the current line.
func (p *parser) newStep(code string, tm Time, kind StepKind) (*Step, error) {
	f, err := p.currentFlow()
	if err != nil {
		return nil, err
	}
	return &Step{Line: p.line, File: p.file, Text: code, Time: tm, Kind: kind, Flow: f}, nil
}

// parseExpect parses `expect none`, `expect no retransmit` and `expect
// event TYPE COND... `, each with an optional `within DUR`.
func (p *parser) parseExpect(code string, tm Time, toks []token) error {
	if len(toks) < 2 {
		return p.errorf("want `expect none`, `expect no retransmit` or `expect event TYPE ...`")
	}
	var st *Step
	var err error
	i := 2
	switch toks[1].text {
	case "none":
		st, err = p.newStep(code, tm, StepNone)
	case "no":
		if len(toks) < 3 || toks[2].text != "retransmit" {
			return p.errorf("want `expect no retransmit`")
		}
		i = 3
		st, err = p.newStep(code, tm, StepNoRetransmit)
	case "event":
		if len(toks) < 3 || toks[2].kind != tokWord || !validIdent(toks[2].text) {
			return p.errorf("want `expect event TYPE [KEY=VALUE ...]` with TYPE such as syn, session or downloader")
		}
		st, err = p.newStep(code, tm, StepEvent)
		if err != nil {
			return err
		}
		st.Event = &EventSpec{Type: toks[2].text}
		i = 3
		for i < len(toks) && toks[i].text != "within" {
			c, err := p.parseCond(toks, &i)
			if err != nil {
				return err
			}
			if len(st.Event.Conds) >= maxConds {
				return p.errorf("more than %d conditions", maxConds)
			}
			st.Event.Conds = append(st.Event.Conds, c)
		}
	default:
		return p.errorf("unknown expectation %s (want none, no retransmit or event)", toks[1])
	}
	if err != nil {
		return err
	}
	if i < len(toks) {
		if toks[i].text != "within" || i+2 != len(toks) {
			return p.errorf("unexpected %s (only `within DUR` may end an expect line)", toks[i])
		}
		if st.Within, err = parseDuration(toks[i+1].text); err != nil {
			return p.errorf("%v", err)
		}
	}
	if tm.Upto > 0 {
		return p.errorf("a time range is for `<` lines; use `within DUR`")
	}
	return p.addStep(st)
}

// parseCond parses KEY OP VALUE[,VALUE...].
func (p *parser) parseCond(toks []token, i *int) (Cond, error) {
	key := toks[*i]
	if key.kind != tokWord || !validKey(key.text) {
		return Cond{}, p.errorf("want a condition KEY=VALUE, KEY!=VALUE or KEY~VALUE, got %s", key)
	}
	*i++
	if *i >= len(toks) || toks[*i].kind != tokPunct {
		return Cond{}, p.errorf("condition %s: want =, != or ~ after the key", key.text)
	}
	var op Op
	switch toks[*i].text {
	case "=":
		op = OpEq
	case "!=":
		op = OpNe
	case "~":
		op = OpContains
	default:
		return Cond{}, p.errorf("condition %s: want =, != or ~, got %s", key.text, toks[*i])
	}
	*i++
	var vals []string
	for {
		if *i >= len(toks) || toks[*i].kind == tokPunct {
			return Cond{}, p.errorf("condition %s%s: value expected", key.text, op)
		}
		vals = append(vals, toks[*i].text)
		*i++
		if *i < len(toks) && toks[*i].kind == tokPunct && toks[*i].text == "," {
			*i++
			continue
		}
		break
	}
	return Cond{Key: key.text, Op: op, Value: strings.Join(vals, ",")}, nil
}

// validKey reports whether k is a dotted path of identifiers.
func validKey(k string) bool {
	for _, part := range strings.Split(k, ".") {
		if !validIdent(part) {
			return false
		}
	}
	return true
}

// parsePacketStep parses a `>` or `<` line.
func (p *parser) parsePacketStep(code string, tm Time, toks []token) error {
	kind := StepSend
	if toks[0].text == "<" {
		kind = StepRecv
	}
	st, err := p.newStep(code, tm, kind)
	if err != nil {
		return err
	}
	if kind == StepSend && tm.Upto > 0 {
		return p.errorf("a time range is for `<` lines")
	}
	if len(toks) < 2 || toks[1].kind != tokWord {
		return p.errorf("want flags after %s (S, S., ., P., F., R, R. ...)", toks[0])
	}
	spec := &PacketSpec{}
	st.Packet = spec
	if spec.Flags, err = parseFlags(toks[1].text); err != nil {
		return p.errorf("%v", err)
	}
	i := 2
	seqLen := -1
	// An optional sequence number right after the flags: N, N:M(LEN) or
	// an expression.
	if i < len(toks) && startsExpr(toks[i]) {
		if start, end, ok := strings.Cut(toks[i].text, ":"); ok && toks[i].kind == tokWord {
			a, err1 := strconv.ParseUint(start, 10, 32)
			b, err2 := strconv.ParseUint(end, 10, 32)
			if err1 != nil || err2 != nil || b < a {
				return p.errorf("bad sequence range %s (want START:END(LEN))", toks[i])
			}
			if i+3 >= len(toks)+0 || toks[i+1].text != "(" || toks[i+3].text != ")" {
				return p.errorf("sequence range %s needs (LEN) after it", toks[i])
			}
			n, err := strconv.ParseUint(toks[i+2].text, 10, 16)
			if err != nil || uint64(n) != b-a {
				return p.errorf("sequence range %s(%s): LEN must be END-START = %d", toks[i].text, toks[i+2].text, b-a)
			}
			spec.Seq = &Expr{num: a, text: start}
			seqLen = int(n)
			i += 4
		} else if spec.Seq, err = parseExpr(toks, &i); err != nil {
			return p.errorf("seq: %v", err)
		}
	}
	setExpr := func(dst **Expr, name string) error {
		if *dst != nil {
			return p.errorf("%s given twice", name)
		}
		i++
		e, err := parseExpr(toks, &i)
		if err != nil {
			return p.errorf("%s: %v", name, err)
		}
		*dst = e
		return nil
	}
	for i < len(toks) {
		t := toks[i]
		switch {
		case t.kind == tokString:
			spec.Payload = append(spec.Payload, t.text...)
			spec.HasPayload = true
			i++
		case t.kind == tokPunct && t.text == "<":
			if spec.HasOptions {
				return p.errorf("options given twice")
			}
			if spec.Options, err = p.parseOptions(toks, &i, kind); err != nil {
				return err
			}
			spec.HasOptions = true
		case t.kind != tokWord:
			return p.errorf("unexpected %s", t)
		case t.text == "seq":
			err = setExpr(&spec.Seq, "seq")
		case t.text == "ack":
			err = setExpr(&spec.Ack, "ack")
		case t.text == "win":
			err = setExpr(&spec.Win, "win")
		case t.text == "ttl":
			err = setExpr(&spec.TTL, "ttl")
		case t.text == "ipid":
			err = setExpr(&spec.IPID, "ipid")
		case t.text == "tos":
			err = setExpr(&spec.TOS, "tos")
		case t.text == "df":
			spec.DF = true
			i++
		case t.text == "hex":
			if i+1 >= len(toks) || toks[i+1].kind != tokString {
				return p.errorf(`want hex "HEX DIGITS"`)
			}
			b, herr := hex.DecodeString(strings.Join(strings.Fields(toks[i+1].text), ""))
			if herr != nil {
				return p.errorf("bad hex payload: %v", herr)
			}
			spec.Payload = append(spec.Payload, b...)
			spec.HasPayload = true
			i += 2
		case t.text == "as":
			if kind != StepRecv {
				return p.errorf("`as NAME` captures a received packet: it belongs on a `<` line")
			}
			if i+1 >= len(toks) || !validIdent(toks[i+1].text) || builtinRefs[toks[i+1].text] {
				return p.errorf("want `as NAME` with a name that is not dst, dport, sport, isn or seq")
			}
			st.Capture = toks[i+1].text
			i += 2
		case t.text == "within":
			if kind != StepRecv {
				return p.errorf("`within` bounds a wait: it belongs on a `<` or expect line")
			}
			if i+1 >= len(toks) {
				return p.errorf("within needs a duration")
			}
			if st.Within, err = parseDuration(toks[i+1].text); err != nil {
				return p.errorf("%v", err)
			}
			i += 2
		default:
			return p.errorf("unknown field %s (want seq, ack, win, ttl, ipid, tos, df, <options>, \"payload\", hex, as or within)", t)
		}
		if err != nil {
			return err
		}
		if len(spec.Payload) > maxPayloadBytes {
			return p.errorf("payload longer than %d bytes", maxPayloadBytes)
		}
	}
	if seqLen >= 0 {
		switch {
		case spec.HasPayload && len(spec.Payload) != seqLen:
			return p.errorf("sequence range says %d bytes, the payload has %d", seqLen, len(spec.Payload))
		case !spec.HasPayload && kind == StepSend && seqLen > 0:
			return p.errorf("sequence range says %d bytes but the line has no payload", seqLen)
		}
		spec.Len, spec.HasLen = seqLen, true
	}
	if st.Within == 0 && tm.Upto > 0 {
		st.Within = tm.Upto - tm.At
	}
	if err := p.checkRefs(st); err != nil {
		return err
	}
	if st.Capture != "" {
		p.captures[st.Capture] = p.line
	}
	return p.addStep(st)
}

// startsExpr reports whether t can start an expression.
func startsExpr(t token) bool {
	if t.kind == tokPunct {
		return t.text == "("
	}
	return t.kind == tokWord && len(t.text) > 0 && (t.text[0] == '$' || t.text[0] >= '0' && t.text[0] <= '9')
}

// parseFlags parses tcpdump-style flags.
func parseFlags(s string) (Flags, error) {
	if s == "none" {
		return 0, nil
	}
	var f Flags
	for i := 0; i < len(s); i++ {
		var x Flags
		switch s[i] {
		case 'S':
			x = FlagSYN
		case 'F':
			x = FlagFIN
		case 'R':
			x = FlagRST
		case 'P':
			x = FlagPSH
		case 'U':
			x = FlagURG
		case 'E':
			x = FlagECE
		case 'W':
			x = FlagCWR
		case '.':
			x = FlagACK
		default:
			return 0, fmt.Errorf("bad flags %q: %q is not one of S F R P U E W . (or none)", s, s[i])
		}
		if f&x != 0 {
			return 0, fmt.Errorf("bad flags %q: %q twice", s, s[i])
		}
		f |= x
	}
	return f, nil
}

// parseOptions parses `<opt, opt, ...>` starting at the `<`.
func (p *parser) parseOptions(toks []token, i *int, kind StepKind) ([]Option, error) {
	*i++ // the '<'
	var opts []Option
	if *i < len(toks) && toks[*i].text == ">" {
		*i++
		return opts, nil
	}
	value := func(name string) (*Expr, error) {
		e, err := parseExpr(toks, i)
		if err != nil {
			return nil, p.errorf("option %s: %v", name, err)
		}
		return e, nil
	}
	for {
		if *i >= len(toks) || toks[*i].kind != tokWord {
			return nil, p.errorf("option name expected in <...> (mss N, sackOK, TS val N ecr N, nop, eol, wscale N)")
		}
		name := toks[*i].text
		*i++
		var o Option
		var err error
		switch strings.ToLower(name) {
		case "mss":
			o.Kind = optMSS
			var e *Expr
			if e, err = value(name); err == nil {
				o.Values = []*Expr{e}
			}
		case "wscale":
			o.Kind = optWScale
			var e *Expr
			if e, err = value(name); err == nil {
				o.Values = []*Expr{e}
			}
		case "sackok", "sack_perm":
			o.Kind = optSACKOK
		case "nop":
			o.Kind = optNOP
		case "eol":
			o.Kind = optEOL
		case "ts", "timestamp":
			o.Kind = optTS
			if *i+1 < len(toks) && toks[*i].text == "val" {
				*i++
				var val, ecr *Expr
				if val, err = value("TS val"); err != nil {
					return nil, err
				}
				if *i >= len(toks) || toks[*i].text != "ecr" {
					return nil, p.errorf("option TS: want `TS val N ecr N`")
				}
				*i++
				if ecr, err = value("TS ecr"); err != nil {
					return nil, err
				}
				o.Values = []*Expr{val, ecr}
			} else if kind == StepSend {
				return nil, p.errorf("option TS: want `TS val N ecr N`")
			}
		default:
			return nil, p.errorf("unknown option %q (want mss, sackOK, TS, nop, eol or wscale)", name)
		}
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
		if *i >= len(toks) {
			return nil, p.errorf("options: missing >")
		}
		switch toks[*i].text {
		case ",":
			*i++
		case ">":
			*i++
			if n := optionBytes(opts); n > 40 {
				return nil, p.errorf("options take %d bytes, at most 40 fit a TCP header", n)
			}
			return opts, nil
		default:
			return nil, p.errorf("options: want , or > after %s, got %s", name, toks[*i])
		}
	}
}

// optionBytes is the wire length of opts before padding.
func optionBytes(opts []Option) int {
	n := 0
	for _, o := range opts {
		n += optionLen(o.Kind)
	}
	return n
}

// optionLen is the wire length of an option kind the format names.
func optionLen(kind uint8) int {
	switch kind {
	case optEOL, optNOP:
		return 1
	case optSACKOK:
		return 2
	case optWScale:
		return 3
	case optMSS:
		return 4
	case optTS:
		return 10
	}
	return 2
}

// checkRefs checks that a packet line refers only to builtins and to
// captures of earlier lines, with known fields.
func (p *parser) checkRefs(st *Step) error {
	spec := st.Packet
	var bad error
	check := func(field string, e *Expr) {
		e.refs(func(r string) {
			if bad != nil {
				return
			}
			name, f, dotted := strings.Cut(r, ".")
			switch {
			case !dotted && builtinRefs[name]:
				if name == "seq" && (field == "seq" || st.Kind == StepRecv) {
					bad = p.errorf("%s: $seq is this packet's own sequence number: use it in ipid, win, ttl or tos of a `>` line", field)
				}
			case !dotted:
				bad = p.errorf("%s: unknown reference $%s (want $dst, $dport, $sport, $isn, $seq or $NAME.field)", field, r)
			case p.captures[name] == 0:
				bad = p.errorf("%s: $%s refers to no earlier `as %s` capture", field, r, name)
			case !captureFields[f]:
				bad = p.errorf("%s: $%s: unknown field %q (want seq, ack, win, ttl, ipid, sport, dport or len)", field, r, f)
			}
		})
	}
	check("seq", spec.Seq)
	check("ack", spec.Ack)
	check("win", spec.Win)
	check("ttl", spec.TTL)
	check("ipid", spec.IPID)
	check("tos", spec.TOS)
	for _, o := range spec.Options {
		for _, v := range o.Values {
			check("option", v)
		}
	}
	return bad
}
