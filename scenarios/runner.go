package scenarios

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Wire sends and receives IP packets on the scanner's side. OpenWire
// returns the AF_PACKET one; tests use a fake.
type Wire interface {
	// WritePacket sends one IP packet (IPv4 or IPv6). The wire does not
	// keep b after it returns.
	WritePacket(b []byte) error
	// ReadPacket reads the next IP packet into buf until deadline, and
	// reports whether the scanner host sent it (outgoing) rather than
	// received it. It returns an error wrapping os.ErrDeadlineExceeded on
	// timeout and net.ErrClosed after Close. Only one goroutine reads.
	ReadPacket(buf []byte, deadline time.Time) (n int, outgoing bool, err error)
	// Close releases the wire; a blocked ReadPacket returns.
	Close() error
}

// Event is one decoded line of the telescope's event log.
type Event map[string]any

// EventSource gives the telescope's events. LogDir reads them from its log
// directory.
type EventSource interface {
	// Events returns the events whose timestamp is not before since, in
	// file order. It may be called concurrently with the telescope writing.
	Events(since time.Time) ([]Event, error)
}

// Config says how a Runner runs scripts. Zero values mean defaults.
type Config struct {
	// Wire carries the packets; required.
	Wire Wire
	// Events gives the telescope's events; nil fails every `expect event`.
	Events EventSource
	// Out receives the pass and fail lines; nil means os.Stdout.
	Out io.Writer
	// Prefixes, when set, are the telescope's prefixes: a flow whose
	// destination is outside them is refused, so that a scenario never
	// sends anywhere but to the telescope.
	Prefixes []netip.Prefix
	// Seed makes random ports and ISNs reproducible; 0 draws one.
	Seed uint64
}

// maxCaptured caps the packets a Runner keeps for one script; later ones
// are counted in the capture's dropped count and reported.
const maxCaptured = 65536

// eventPoll is how often `expect event` re-reads the event log.
const eventPoll = 200 * time.Millisecond

// captured is one packet the wire saw.
type captured struct {
	pkt      Packet
	outgoing bool
	consumed bool
}

// Runner runs scripts over one wire. Its capture loop runs from NewRunner
// to Close. Run may not be called concurrently.
type Runner struct {
	cfg Config
	out io.Writer
	rng *rand.Rand

	mu      sync.Mutex
	pkts    []*captured
	dropped int
	changed chan struct{} // closed and replaced when a packet arrives
	readErr error

	stop chan struct{}
	done chan struct{}
}

// NewRunner starts the capture loop on cfg.Wire. The caller must call
// Close, which also closes the wire.
func NewRunner(cfg Config) *Runner {
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &Runner{
		cfg:     cfg,
		out:     cfg.Out,
		rng:     rand.New(rand.NewPCG(seed, seed^0x5ce0)),
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if r.out == nil {
		r.out = os.Stdout
	}
	go r.captureLoop()
	return r
}

// Close stops the capture loop, then closes the wire (in that order, so
// that no read is in flight on a closed descriptor).
func (r *Runner) Close() error {
	close(r.stop)
	<-r.done
	return r.cfg.Wire.Close()
}

// captureLoop reads packets into r.pkts until Close.
func (r *Runner) captureLoop() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		n, outgoing, err := r.cfg.Wire.ReadPacket(buf, time.Now().Add(100*time.Millisecond))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			select {
			case <-r.stop:
			default:
				r.mu.Lock()
				r.readErr = err
				r.mu.Unlock()
				r.notify()
			}
			return
		}
		p, ok := DecodeIP(buf[:n])
		if !ok {
			continue
		}
		p.Time = time.Now()
		r.mu.Lock()
		if len(r.pkts) < maxCaptured {
			r.pkts = append(r.pkts, &captured{pkt: p, outgoing: outgoing})
		} else {
			r.dropped++
		}
		r.mu.Unlock()
		r.notify()
	}
}

// notify wakes up waiters.
func (r *Runner) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// reset forgets the packets of the previous script.
func (r *Runner) reset() {
	r.mu.Lock()
	r.pkts, r.dropped = nil, 0
	r.mu.Unlock()
}

// flowState is a flow while its script runs.
type flowState struct {
	f        *Flow
	src, dst netip.AddrPort
	isn      uint32
	sndNxt   uint32
	theirISN uint32
	haveISN  bool
	rcvNxt   uint32
	sentAny  bool
}

// run is one script's execution.
type run struct {
	r        *Runner
	s        *Script
	flows    map[*Flow]*flowState
	captures map[string]Packet
	start    time.Time
	sent     map[[2]netip.AddrPort]bool // flows we sent on, for leak checks
}

// StepError is a failed step.
type StepError struct {
	// File and Line locate the step, Text is the line.
	File string
	Line int
	Text string
	// Msg says what went wrong.
	Msg string
}

// Error implements error: "FILE:LINE: TEXT: MSG".
func (e *StepError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Text, e.Msg)
}

// Unwrap returns ErrFailed.
func (e *StepError) Unwrap() error { return ErrFailed }

// Run runs s: it prints one line per step ("ok" or "FAIL" with the
// reason), stops at the first failure, and ends with a summary line. It
// returns a *StepError (wrapping ErrFailed) for a failed step, or ctx's
// error.
func (r *Runner) Run(ctx context.Context, s *Script) error {
	r.reset()
	fmt.Fprintf(r.out, "=== RUN  %s\n", s.Name)
	ru := &run{r: r, s: s, flows: map[*Flow]*flowState{}, captures: map[string]Packet{}, sent: map[[2]netip.AddrPort]bool{}}
	if err := ru.prepare(); err != nil {
		fmt.Fprintf(r.out, "  FAIL %s\n--- FAIL %s\n", err.Msg, s.Name)
		return err
	}
	ru.start = time.Now()
	prevEnd := ru.start
	for _, st := range s.Steps {
		at := prevEnd.Add(st.Time.At)
		if !st.Time.Relative {
			at = ru.start.Add(st.Time.At)
		}
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		detail, end, err := ru.step(ctx, st, prevEnd)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			se := &StepError{File: st.File, Line: st.Line, Text: st.Text, Msg: err.Error()}
			fmt.Fprintf(r.out, "  FAIL %s:%d  %s\n       %s\n--- FAIL %s (%.1fs)\n", st.File, st.Line, st.Text, err, s.Name, time.Since(ru.start).Seconds())
			return se
		}
		if detail != "" {
			detail = "  [" + detail + "]"
		}
		fmt.Fprintf(r.out, "  ok   %s:%d  %s%s\n", st.File, st.Line, st.Text, detail)
		prevEnd = end
	}
	if err := ru.checkLeaks(); err != nil {
		fmt.Fprintf(r.out, "  FAIL %s\n--- FAIL %s\n", err.Msg, s.Name)
		return err
	}
	fmt.Fprintf(r.out, "--- PASS %s (%d steps, %.1fs)\n", s.Name, len(s.Steps), time.Since(ru.start).Seconds())
	return nil
}

// prepare draws ports and ISNs and checks the destinations.
func (ru *run) prepare() *StepError {
	used := map[netip.AddrPort]bool{}
	for _, f := range ru.s.Flows {
		fail := func(format string, args ...any) *StepError {
			return &StepError{File: ru.s.Name, Line: f.Line, Text: "flow " + f.Name, Msg: fmt.Sprintf(format, args...)}
		}
		if len(ru.r.cfg.Prefixes) > 0 && !inPrefixes(ru.r.cfg.Prefixes, f.Dst.Addr()) {
			return fail("destination %s is outside the telescope's prefixes %v", f.Dst, ru.r.cfg.Prefixes)
		}
		src := ru.s.Src4
		if f.Dst.Addr().Is6() {
			src = ru.s.Src6
		}
		fs := &flowState{f: f, dst: f.Dst}
		sport := f.Sport
		for sport == 0 || used[netip.AddrPortFrom(src, sport)] && f.Sport == 0 {
			sport = uint16(40000 + ru.r.rng.IntN(20000))
		}
		used[netip.AddrPortFrom(src, sport)] = true
		fs.src = netip.AddrPortFrom(src, sport)
		fs.isn = ru.r.rng.Uint32()
		if f.ISN != nil {
			v, err := f.ISN.Eval(fs.lookupBuiltin)
			if err != nil {
				return fail("isn %s: %v", f.ISN, err)
			}
			fs.isn = uint32(v)
		}
		fs.sndNxt = fs.isn
		ru.flows[f] = fs
	}
	return nil
}

// inPrefixes reports whether a is inside one of prefixes.
func inPrefixes(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// lookupBuiltin resolves $dst, $dport, $sport and $isn for a flow. $dst is
// the IPv4 address as a number, or the low 32 bits of an IPv6 one.
func (fs *flowState) lookupBuiltin(ref string) (uint64, error) {
	switch ref {
	case "dst":
		b := fs.dst.Addr().As16()
		return uint64(binary.BigEndian.Uint32(b[12:])), nil
	case "dport":
		return uint64(fs.dst.Port()), nil
	case "sport":
		return uint64(fs.src.Port()), nil
	case "isn":
		return uint64(fs.isn), nil
	}
	return 0, fmt.Errorf("$%s is not known here", ref)
}

// lookup resolves a reference of a packet line; seq is the packet's own
// sequence number once known (nil before).
func (ru *run) lookup(fs *flowState, seq *uint32) func(string) (uint64, error) {
	return func(ref string) (uint64, error) {
		if name, field, ok := strings.Cut(ref, "."); ok {
			p, ok := ru.captures[name]
			if !ok {
				return 0, fmt.Errorf("$%s: nothing captured as %s (its line did not match)", ref, name)
			}
			switch field {
			case "seq":
				return uint64(p.Seq), nil
			case "ack":
				return uint64(p.Ack), nil
			case "win":
				return uint64(p.Win), nil
			case "ttl":
				return uint64(p.TTL), nil
			case "ipid":
				return uint64(p.IPID), nil
			case "sport":
				return uint64(p.Src.Port()), nil
			case "dport":
				return uint64(p.Dst.Port()), nil
			case "len":
				return uint64(len(p.Payload)), nil
			}
			return 0, fmt.Errorf("$%s: unknown field", ref)
		}
		if ref == "seq" {
			if seq == nil {
				return 0, fmt.Errorf("$seq is not known yet")
			}
			return uint64(*seq), nil
		}
		return fs.lookupBuiltin(ref)
	}
}

// step runs one step. It returns a detail for the ok line and the step's
// end time.
func (ru *run) step(ctx context.Context, st *Step, since time.Time) (string, time.Time, error) {
	fs := ru.flows[st.Flow]
	switch st.Kind {
	case StepSend:
		p, err := ru.buildPacket(fs, st.Packet)
		if err != nil {
			return "", time.Now(), err
		}
		b, err := p.Marshal()
		if err != nil {
			return "", time.Now(), err
		}
		if err := ru.r.cfg.Wire.WritePacket(b); err != nil {
			return "", time.Now(), fmt.Errorf("send: %w", err)
		}
		ru.sent[[2]netip.AddrPort{fs.src, fs.dst}] = true
		fs.sentAny = true
		fs.sndNxt = p.Seq + p.segLen()
		return "sent " + p.String(), time.Now(), nil
	case StepRecv:
		return ru.expectPacket(ctx, fs, st)
	case StepNone, StepNoRetransmit:
		return ru.expectQuiet(ctx, fs, st, since)
	case StepEvent:
		return ru.expectEvent(ctx, fs, st)
	}
	return "", time.Now(), fmt.Errorf("unknown step kind %d", st.Kind)
}

// evalField evaluates an optional expression cut to bits, or returns def.
func evalField(e *Expr, def uint64, bits uint, name string, lookup func(string) (uint64, error)) (uint64, error) {
	if e == nil {
		return def, nil
	}
	v, err := e.Eval(lookup)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", name, e, err)
	}
	if bits < 32 && v >= 1<<bits {
		return 0, fmt.Errorf("%s %s = %d does not fit %d bits", name, e, v, bits)
	}
	return v & (1<<bits - 1), nil
}

// buildPacket evaluates a `>` line into a packet.
func (ru *run) buildPacket(fs *flowState, spec *PacketSpec) (*Packet, error) {
	p := &Packet{Src: fs.src, Dst: fs.dst, Flags: spec.Flags, Payload: spec.Payload, DF: spec.DF, Time: time.Now()}
	lookup := ru.lookup(fs, nil)
	switch {
	case spec.Seq == nil:
		p.Seq = fs.sndNxt
	case spec.Seq.Absolute():
		v, err := spec.Seq.Eval(lookup)
		if err != nil {
			return nil, fmt.Errorf("seq %s: %w", spec.Seq, err)
		}
		p.Seq = uint32(v)
	default:
		v, _ := spec.Seq.Eval(lookup)
		p.Seq = fs.isn + uint32(v)
	}
	lookup = ru.lookup(fs, &p.Seq)
	switch {
	case spec.Ack == nil && spec.Flags&FlagACK != 0:
		if !fs.haveISN {
			return nil, fmt.Errorf("an ACK without `ack`, and nothing received to acknowledge: give `ack N`")
		}
		p.Ack = fs.rcvNxt
	case spec.Ack == nil:
	case spec.Ack.Absolute():
		v, err := spec.Ack.Eval(lookup)
		if err != nil {
			return nil, fmt.Errorf("ack %s: %w", spec.Ack, err)
		}
		p.Ack = uint32(v)
	default:
		if !fs.haveISN {
			return nil, fmt.Errorf("ack %s is relative to the telescope's ISN, but no SYN-ACK was received on flow %s", spec.Ack, fs.f.Name)
		}
		v, _ := spec.Ack.Eval(lookup)
		p.Ack = fs.theirISN + uint32(v)
	}
	var err error
	var v uint64
	if v, err = evalField(spec.Win, DefaultWindow, 16, "win", lookup); err != nil {
		return nil, err
	}
	p.Win = uint16(v)
	if v, err = evalField(spec.TTL, DefaultTTL, 8, "ttl", lookup); err != nil {
		return nil, err
	}
	p.TTL = uint8(v)
	if v, err = evalField(spec.IPID, DefaultIPID, 16, "ipid", lookup); err != nil {
		return nil, err
	}
	if fs.dst.Addr().Is4() {
		p.IPID = uint16(v)
	}
	if v, err = evalField(spec.TOS, 0, 8, "tos", lookup); err != nil {
		return nil, err
	}
	p.TOS = uint8(v)
	for _, o := range spec.Options {
		ro := RawOption{Kind: o.Kind}
		switch o.Kind {
		case optMSS:
			v, err := evalField(o.Values[0], 0, 16, "mss", lookup)
			if err != nil {
				return nil, err
			}
			ro.Data = binary.BigEndian.AppendUint16(nil, uint16(v))
		case optWScale:
			v, err := evalField(o.Values[0], 0, 8, "wscale", lookup)
			if err != nil {
				return nil, err
			}
			ro.Data = []byte{byte(v)}
		case optTS:
			val, err := evalField(o.Values[0], 0, 32, "TS val", lookup)
			if err != nil {
				return nil, err
			}
			ecr, err := evalField(o.Values[1], 0, 32, "TS ecr", lookup)
			if err != nil {
				return nil, err
			}
			ro.Data = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(val)), uint32(ecr))
		}
		p.Options = append(p.Options, ro)
	}
	return p, nil
}

// flowPackets returns the received packets of a flow (telescope to
// scanner), with the index of each in r.pkts.
func (ru *run) inbound(fs *flowState, c *captured) bool {
	return !c.outgoing && c.pkt.Src == fs.dst && c.pkt.Dst == fs.src
}

// waitChange waits until a packet arrives, the deadline passes or ctx is
// done; it reports whether the deadline is still ahead.
func (ru *run) waitChange(ctx context.Context, changed <-chan struct{}, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	case <-changed:
		return true
	}
}

// expectPacket waits for an unconsumed received packet of the flow that
// matches the `<` line. Packets that do not match are passed over (the
// telescope's stack may send a bare ACK before its data, or retransmit)
// and named in the failure message.
func (ru *run) expectPacket(ctx context.Context, fs *flowState, st *Step) (string, time.Time, error) {
	within := st.window(DefaultWithin)
	deadline := time.Now().Add(within)
	for {
		ru.r.mu.Lock()
		changed := ru.r.changed
		var misses []string
		for _, c := range ru.r.pkts {
			if c.consumed || !ru.inbound(fs, c) {
				continue
			}
			why := ru.match(fs, st.Packet, &c.pkt)
			if why != "" {
				misses = append(misses, c.pkt.String()+" ("+why+")")
				continue
			}
			c.consumed = true
			ru.r.mu.Unlock()
			ru.accept(fs, st, c.pkt)
			return "got " + c.pkt.String(), time.Now(), nil
		}
		readErr := ru.r.readErr
		ru.r.mu.Unlock()
		if readErr != nil {
			return "", time.Now(), fmt.Errorf("capture: %w", readErr)
		}
		if !ru.waitChange(ctx, changed, deadline) {
			msg := fmt.Sprintf("no matching packet from %s to %s within %v", fs.dst, fs.src, within)
			if len(misses) == 0 {
				return "", time.Now(), errors.New(msg + "; nothing else received on the flow")
			}
			if len(misses) > 3 {
				misses = append(misses[:3], fmt.Sprintf("and %d more", len(misses)-3))
			}
			return "", time.Now(), fmt.Errorf("%s; got %s", msg, strings.Join(misses, "; "))
		}
	}
}

// accept records a matched packet: the telescope's ISN, what to
// acknowledge next, and the capture.
func (ru *run) accept(fs *flowState, st *Step, p Packet) {
	if p.Flags&FlagSYN != 0 && !fs.haveISN {
		fs.theirISN, fs.haveISN = p.Seq, true
		fs.rcvNxt = p.Seq
	}
	if end := p.Seq + p.segLen(); fs.haveISN && int32(end-fs.rcvNxt) > 0 {
		fs.rcvNxt = end
	}
	if st.Capture != "" {
		ru.captures[st.Capture] = p
	}
}

// match returns "" when p matches spec, else the first difference.
func (ru *run) match(fs *flowState, spec *PacketSpec, p *Packet) string {
	if p.Flags != spec.Flags {
		return fmt.Sprintf("flags %s, want %s", p.Flags, spec.Flags)
	}
	lookup := ru.lookup(fs, nil)
	if spec.Seq != nil {
		var want uint32
		if spec.Seq.Absolute() {
			v, err := spec.Seq.Eval(lookup)
			if err != nil {
				return err.Error()
			}
			want = uint32(v)
		} else {
			base, ok := fs.theirISN, fs.haveISN
			if !ok && p.Flags&FlagSYN != 0 {
				base, ok = p.Seq, true
			}
			if !ok {
				return fmt.Sprintf("seq %s is relative to the telescope's ISN, but no SYN-ACK was received yet", spec.Seq)
			}
			v, _ := spec.Seq.Eval(lookup)
			want = base + uint32(v)
		}
		if p.Seq != want {
			return fmt.Sprintf("seq %d, want %d", p.Seq, want)
		}
	}
	if spec.Ack != nil {
		v, err := spec.Ack.Eval(lookup)
		if err != nil {
			return err.Error()
		}
		want := uint32(v)
		if !spec.Ack.Absolute() {
			want += fs.isn
		}
		if p.Flags&FlagACK == 0 || p.Ack != want {
			return fmt.Sprintf("ack %d (relative %d), want %d (relative %d)", p.Ack, p.Ack-fs.isn, want, want-fs.isn)
		}
	}
	for _, f := range []struct {
		name string
		e    *Expr
		got  uint64
	}{{"win", spec.Win, uint64(p.Win)}, {"ttl", spec.TTL, uint64(p.TTL)}, {"ipid", spec.IPID, uint64(p.IPID)}, {"tos", spec.TOS, uint64(p.TOS)}} {
		if f.e == nil {
			continue
		}
		v, err := f.e.Eval(lookup)
		if err != nil {
			return err.Error()
		}
		if v != f.got {
			return fmt.Sprintf("%s %d, want %d", f.name, f.got, v)
		}
	}
	if spec.DF && !p.DF {
		return "no DF bit, want df"
	}
	if spec.HasOptions {
		if why := matchOptions(spec.Options, p.Options, lookup); why != "" {
			return why
		}
	}
	if spec.HasPayload && !bytes.Equal(p.Payload, spec.Payload) {
		return fmt.Sprintf("payload %q, want %q", p.Payload, spec.Payload)
	}
	if spec.HasLen && len(p.Payload) != spec.Len {
		return fmt.Sprintf("%d payload bytes, want %d", len(p.Payload), spec.Len)
	}
	return ""
}

// matchOptions compares received options with a `<` line's list.
func matchOptions(want []Option, got []RawOption, lookup func(string) (uint64, error)) string {
	describe := func() string { return fmt.Sprintf("options <%s>", formatOptions(got)) }
	if len(want) != len(got) {
		return fmt.Sprintf("%s, want %d options", describe(), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Kind != w.Kind {
			return fmt.Sprintf("%s: option %d is kind %d, want %d", describe(), i+1, g.Kind, w.Kind)
		}
		var vals []uint64
		switch {
		case len(w.Values) == 0:
			continue
		case w.Kind == optMSS && len(g.Data) == 2:
			vals = []uint64{uint64(binary.BigEndian.Uint16(g.Data))}
		case w.Kind == optWScale && len(g.Data) == 1:
			vals = []uint64{uint64(g.Data[0])}
		case w.Kind == optTS && len(g.Data) == 8:
			vals = []uint64{uint64(binary.BigEndian.Uint32(g.Data)), uint64(binary.BigEndian.Uint32(g.Data[4:]))}
		default:
			return fmt.Sprintf("%s: option %d has a bad length", describe(), i+1)
		}
		for j, e := range w.Values {
			v, err := e.Eval(lookup)
			if err != nil {
				return err.Error()
			}
			if v != vals[j] {
				return fmt.Sprintf("%s, want %s", describe(), e)
			}
		}
	}
	return ""
}

// expectQuiet checks `expect none` (no packet of the flow) and `expect no
// retransmit` (no packet that repeats one received before) over the
// window that starts at the previous step's end.
func (ru *run) expectQuiet(ctx context.Context, fs *flowState, st *Step, since time.Time) (string, time.Time, error) {
	within := st.window(DefaultWithin)
	deadline := time.Now().Add(within)
	for {
		ru.r.mu.Lock()
		changed := ru.r.changed
		type key struct {
			flags    Flags
			seq, ack uint32
			n        int
		}
		seen := map[key]bool{}
		var bad *Packet
		for _, c := range ru.r.pkts {
			if !ru.inbound(fs, c) {
				continue
			}
			k := key{c.pkt.Flags, c.pkt.Seq, c.pkt.Ack, len(c.pkt.Payload)}
			if !c.pkt.Time.Before(since) {
				if st.Kind == StepNone || seen[k] {
					p := c.pkt
					bad = &p
					break
				}
			}
			seen[k] = true
		}
		ru.r.mu.Unlock()
		if bad != nil {
			if st.Kind == StepNone {
				return "", time.Now(), fmt.Errorf("got %s after %v", bad, bad.Time.Sub(since).Round(time.Millisecond))
			}
			return "", time.Now(), fmt.Errorf("retransmission %s after %v", bad, bad.Time.Sub(since).Round(time.Millisecond))
		}
		if !ru.waitChange(ctx, changed, deadline) {
			if ctx.Err() != nil {
				return "", time.Now(), ctx.Err()
			}
			return fmt.Sprintf("quiet for %v", within), time.Now(), nil
		}
	}
}

// checkLeaks fails the script if the scanner host itself sent a TCP
// packet on one of the script's flows: the kernel answering the
// telescope, which the wire's set-up must prevent.
func (ru *run) checkLeaks() *StepError {
	ru.r.mu.Lock()
	defer ru.r.mu.Unlock()
	for _, c := range ru.r.pkts {
		if !c.outgoing {
			continue
		}
		for _, fs := range ru.flows {
			if c.pkt.Src == fs.src && c.pkt.Dst == fs.dst {
				return &StepError{File: ru.s.Name, Line: fs.f.Line, Text: "flow " + fs.f.Name,
					Msg: fmt.Sprintf("the scanner host's kernel sent %s to %s: it must not answer for the scenario's address", c.pkt.String(), fs.dst)}
			}
		}
	}
	if ru.r.dropped > 0 {
		return &StepError{File: ru.s.Name, Line: 1, Text: "capture", Msg: fmt.Sprintf("%d packets not kept (more than %d)", ru.r.dropped, maxCaptured)}
	}
	return nil
}
