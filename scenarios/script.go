package scenarios

import (
	"net/netip"
	"time"
)

// Limits of the parser: a scenario is a short script, and these caps keep a
// hostile or broken file from growing memory without bound.
const (
	// maxFileBytes caps one file (includes count separately).
	maxFileBytes = 1 << 20
	// maxSteps caps the steps of one script, includes included.
	maxSteps = 10000
	// maxIncludeDepth caps nested includes (and breaks include cycles).
	maxIncludeDepth = 8
	// maxPayloadBytes caps one packet's payload: it must fit a 1500-byte MTU
	// with the largest headers (IPv6 40, TCP 60).
	maxPayloadBytes = 1400
	// maxFlows caps the flows of one script.
	maxFlows = 256
	// maxWithin caps any wait a line asks for.
	maxWithin = 5 * time.Minute
	// maxConds caps the conditions of one event expectation.
	maxConds = 64
)

// Defaults of the runner, when a line does not say.
const (
	// DefaultWithin is how long a `<` line or an `expect event` waits.
	DefaultWithin = 2 * time.Second
	// DefaultEventWithin is how long `expect event` waits: the telescope
	// flushes its event log every second and writes a session event when
	// the connection ends.
	DefaultEventWithin = 5 * time.Second
	// DefaultWindow, DefaultTTL and DefaultIPID are the fields of a `>`
	// packet that does not set them.
	DefaultWindow = 65535
	DefaultTTL    = 64
	DefaultIPID   = 1
)

// Script is a parsed scenario file.
type Script struct {
	// Name is the file's name as given to ParseFile.
	Name string
	// Doc is the opening comment block, without comment markers: what the
	// scenario checks and why.
	Doc string
	// WantFail is the text of a `// want-fail: TEXT` comment: the
	// scenario is expected to fail with a message containing TEXT (it
	// tests the runner). Runner.Run still reports it as a failure; tests
	// compare the message.
	WantFail string
	// Telescope holds the flags of a `// telescope: FLAGS` comment: the
	// scenario needs a telescope started with them (`spoki run FLAGS`),
	// e.g. --pure or a short --idle-timeout. Scenarios without it run
	// against any telescope.
	Telescope []string
	// Src holds the scanner-side source address of each family (`src`
	// directives), IPv4 first; either may be invalid when not declared.
	Src4, Src6 netip.Addr
	// Flows are the connections the script uses, in declaration order.
	Flows []*Flow
	// Steps are the timed lines, in file order.
	Steps []*Step
}

// Flow is one TCP connection of a script: the scanner's port and initial
// sequence number towards one telescope address and port.
type Flow struct {
	// Name is the flow's name (`flow NAME`), "main" for the implicit one.
	Name string
	// Dst is the telescope address and port.
	Dst netip.AddrPort
	// Sport is the scanner's port; 0 means a random one from 40000-59999.
	Sport uint16
	// ISN is the initial sequence number; nil means a random one. It may
	// refer to $dst, $dport and $sport.
	ISN *Expr
	// Line is where the flow was declared.
	Line int
}

// StepKind says what a step does.
type StepKind int

// The kinds of steps.
const (
	// StepSend sends a packet (`>`).
	StepSend StepKind = iota + 1
	// StepRecv expects a packet (`<`).
	StepRecv
	// StepNone expects no packet on the flow (`expect none`).
	StepNone
	// StepNoRetransmit expects no repeat of a packet already received on
	// the flow (`expect no retransmit`).
	StepNoRetransmit
	// StepEvent expects an event in the telescope's log (`expect event`).
	StepEvent
)

// Time is a line's time column.
type Time struct {
	// Relative times (`+0.5`) count from the end of the previous step,
	// absolute ones (`1.5`) from the start of the script.
	Relative bool
	// At is the time; Upto, when above At, is the end of a packetdrill
	// tolerance range (`+0...2`), which a `<` line takes as its window.
	At, Upto time.Duration
}

// Step is one timed line of a script.
type Step struct {
	// Line is the 1-based line number, File the file it is in (an
	// included file's name for its lines), Text the line without its
	// comment.
	Line int
	File string
	Text string
	// Time is the time column (zero: `+0`).
	Time Time
	// Kind says what the step does; Flow is the connection it acts on.
	Kind StepKind
	Flow *Flow
	// Packet is the packet sent or expected (StepSend, StepRecv).
	Packet *PacketSpec
	// Within bounds the wait of StepRecv, StepNone, StepNoRetransmit and
	// StepEvent (0 means the default).
	Within time.Duration
	// Capture names the received packet for later `$NAME.field`
	// references (StepRecv, `as NAME`).
	Capture string
	// Event is the expected event (StepEvent).
	Event *EventSpec
}

// window returns how long the step waits: Within, or def where it is 0.
func (st *Step) window(def time.Duration) time.Duration {
	if st.Within == 0 {
		return def
	}
	return st.Within
}

// PacketSpec is a packet line's fields. Nil expressions are unset: a `>`
// line takes defaults, a `<` line does not check them.
type PacketSpec struct {
	// Flags is the set of TCP flags, tcpdump style ("S", "S.", "P.", "R").
	Flags Flags
	// Seq and Ack are the sequence and acknowledgement numbers. A value
	// that refers to no `$` name is relative (to the scanner's ISN for
	// the scanner's seq and the telescope's ack, to the telescope's ISN
	// otherwise); one that does is absolute.
	Seq, Ack *Expr
	// Win, TTL, IPID and TOS are the window, TTL (hop limit), IPv4 ID and
	// TOS (traffic class).
	Win, TTL, IPID, TOS *Expr
	// DF sets IPv4's don't-fragment bit.
	DF bool
	// Options are the TCP options in wire order; HasOptions tells `<>`
	// (no options, checked) from no options list (not checked).
	Options    []Option
	HasOptions bool
	// Payload is the data; HasPayload tells an empty string from none.
	Payload    []byte
	HasPayload bool
	// Len is the LEN of a START:END(LEN) sequence number (HasLen set): a
	// `<` line checks the received payload's length against it.
	Len    int
	HasLen bool
}

// Flags is a set of TCP flags.
type Flags uint8

// TCP flag bits, as on the wire.
const (
	FlagFIN Flags = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

// String formats f tcpdump style: letters in the order S F R P U E W, then
// '.' for ACK ("S.", "P.", "."), "none" for no flags.
func (f Flags) String() string {
	var b []byte
	for _, x := range []struct {
		f Flags
		c byte
	}{{FlagSYN, 'S'}, {FlagFIN, 'F'}, {FlagRST, 'R'}, {FlagPSH, 'P'}, {FlagURG, 'U'}, {FlagECE, 'E'}, {FlagCWR, 'W'}, {FlagACK, '.'}} {
		if f&x.f != 0 {
			b = append(b, x.c)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

// Option is one TCP option of a packet line.
type Option struct {
	// Kind is the option kind (IANA): 0 eol, 1 nop, 2 mss, 3 wscale,
	// 4 sackOK, 8 TS.
	Kind uint8
	// Values are the option's numbers: mss and wscale one, TS two (val,
	// ecr); nil in a `<` line means "any value".
	Values []*Expr
}

// TCP option kinds the format names.
const (
	optEOL    = 0
	optNOP    = 1
	optMSS    = 2
	optWScale = 3
	optSACKOK = 4
	optTS     = 8
)

// EventSpec is an `expect event` line.
type EventSpec struct {
	// Type is the event_type ("syn", "session", "downloader", ...).
	Type string
	// Conds must all hold for one event of Type on the step's flow.
	Conds []Cond
}

// Op is a condition's comparison.
type Op int

// The comparisons of an event condition.
const (
	// OpEq: the field equals the value (an array: its elements joined
	// with commas).
	OpEq Op = iota + 1
	// OpNe: the field is missing or differs.
	OpNe
	// OpContains: a string field contains the value, or an array has it
	// as an element.
	OpContains
)

// String returns the operator as written.
func (o Op) String() string {
	switch o {
	case OpEq:
		return "="
	case OpNe:
		return "!="
	case OpContains:
		return "~"
	}
	return "?"
}

// Cond is one KEY OP VALUE of an event expectation. Key is a dotted path
// into the event's JSON object (tcp.ipid); a last element named payload is
// base64-decoded before comparing.
type Cond struct {
	Key   string
	Op    Op
	Value string
}
