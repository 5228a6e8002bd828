package telnet

import "strconv"

// Telnet commands (RFC 854) and the options spoki names (RFC 857, 858,
// 1073, 1091, ...).
const (
	se   = 240
	sb   = 250
	will = 251
	wont = 252
	do   = 253
	dont = 254
	iac  = 255

	optEcho   = 1
	optSGA    = 3
	optTTYPE  = 24
	optNAWS   = 31
	optLinemd = 34
)

var optNames = map[byte]string{0: "BINARY", 1: "ECHO", 3: "SGA", 5: "STATUS", 24: "TTYPE", 31: "NAWS",
	32: "TSPEED", 33: "LFLOW", 34: "LINEMODE", 35: "XDISPLOC", 36: "OLD-ENVIRON", 39: "NEW-ENVIRON"}

var verbNames = [...]string{will - will: "WILL", wont - will: "WONT", do - will: "DO", dont - will: "DONT"}

// Negotiation is one option command the client sent: Verb is WILL, WONT,
// DO or DONT, Opt the option code.
type Negotiation struct {
	Verb byte
	Opt  byte
}

// String returns e.g. "WILL NAWS", or "DO 200" for an unnamed option.
func (n Negotiation) String() string {
	name, ok := optNames[n.Opt]
	if !ok {
		name = strconv.Itoa(int(n.Opt))
	}
	return verbNames[n.Verb-will] + " " + name
}

// Decoder splits the client's byte stream into text lines and telnet
// commands, across reads. Its zero value is ready; it is not safe for
// concurrent use. Lines end at CR, LF, CR LF or CR NUL; a line longer
// than MaxLine bytes is cut (the rest until its end is dropped).
type Decoder struct {
	// MaxLine caps a line's length; 0 means DefaultMaxLineBytes.
	MaxLine int

	state   int    // decoder state, see Feed
	line    []byte // the line being read
	cut     bool   // the current line was cut
	lastCR  bool   // the previous byte ended a line with CR
	sub     []byte // the subnegotiation being read (capped)
	verb    byte
	Cut     int      // lines cut so far
	Window  [2]int   // NAWS width and height, 0 if not sent
	Term    string   // TTYPE IS value
	pending []string // lines completed by the current Feed
}

// Decoder states.
const (
	stData = iota
	stIAC
	stVerb
	stSB
	stSBIAC
)

// maxSub caps a subnegotiation's recorded bytes.
const maxSub = 64

// Feed decodes b and returns the lines it completed and the negotiations
// it contained, in order within each kind. It never fails: malformed
// commands are dropped.
func (d *Decoder) Feed(b []byte) (lines []string, negs []Negotiation) {
	maxLine := d.MaxLine
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	d.pending = d.pending[:0]
	for _, c := range b {
		switch d.state {
		case stData:
			switch {
			case c == iac:
				d.state = stIAC
			case c == '\r' || c == '\n':
				if c == '\n' && d.lastCR {
					d.lastCR = false // the LF of CR LF
					continue
				}
				d.lastCR = c == '\r'
				d.endLine()
			case c == 0:
				d.lastCR = false // the NUL of CR NUL, or padding
			default:
				d.lastCR = false
				if len(d.line) < maxLine {
					d.line = append(d.line, c)
				} else {
					d.cut = true
				}
			}
		case stIAC:
			switch {
			case c == iac: // an escaped 0xff data byte
				d.state = stData
				if len(d.line) < maxLine {
					d.line = append(d.line, c)
				}
			case c >= will && c <= dont:
				d.verb, d.state = c, stVerb
			case c == sb:
				d.sub, d.state = d.sub[:0], stSB
			default: // NOP, AYT, GA, ...: nothing to record
				d.state = stData
			}
		case stVerb:
			negs = append(negs, Negotiation{Verb: d.verb, Opt: c})
			d.state = stData
		case stSB:
			if c == iac {
				d.state = stSBIAC
			} else if len(d.sub) < maxSub {
				d.sub = append(d.sub, c)
			}
		case stSBIAC:
			switch c {
			case se:
				d.subnegotiation()
				d.state = stData
			case iac:
				if len(d.sub) < maxSub {
					d.sub = append(d.sub, c)
				}
				d.state = stSB
			default:
				d.state = stSB
			}
		}
	}
	return d.pending, negs
}

func (d *Decoder) endLine() {
	d.pending = append(d.pending, string(d.line))
	if d.cut {
		d.Cut++
	}
	d.line, d.cut = d.line[:0], false
}

// subnegotiation records NAWS and TTYPE IS.
func (d *Decoder) subnegotiation() {
	if len(d.sub) == 0 {
		return
	}
	switch d.sub[0] {
	case optNAWS:
		if len(d.sub) >= 5 {
			d.Window = [2]int{int(d.sub[1])<<8 | int(d.sub[2]), int(d.sub[3])<<8 | int(d.sub[4])}
		}
	case optTTYPE:
		if len(d.sub) >= 2 && d.sub[1] == 0 { // IS
			d.Term = string(d.sub[2:])
		}
	}
}

// Partial returns the bytes of the line not yet ended, for a client that
// stops without a newline.
func (d *Decoder) Partial() string { return string(d.line) }
