package handlers

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

// Matcher says which connections a registered Handler serves. The Mux
// tries content before port: a scanner speaking TLS to port 80 gets the TLS
// handler, and a client that sends nothing gets the handler of its port.
type Matcher struct {
	// Content reports whether the client's first segment is this handler's
	// protocol. It is called only with a non-empty segment, in registration
	// order, on the connection's goroutine, concurrently for many
	// connections; it must be fast, pure, and must not modify or retain
	// first. nil means no content match.
	Content func(first []byte) bool
	// Ports are the local (telescope) ports the handler serves when no
	// content matcher claims the connection. A port belongs to at most one
	// handler per address: two handlers may share a port only when their
	// Prefixes do not overlap.
	Ports []uint16
	// Prefixes, when not empty, limit the handler (its content matcher and
	// its ports) to connections whose local (telescope) address lies in one
	// of them; empty means every address. It is how the configuration picks
	// handlers per telescope prefix.
	Prefixes []netip.Prefix
	// SpeakFirst is the wait for the client's first segment on Ports
	// before the handler is called with a nil First to speak first
	// (telnet's options, ssh's banner): clients of such protocols wait for
	// the server, so waiting the Mux's whole FirstDataTimeout would only
	// lose them. Zero keeps MuxConfig.FirstDataTimeout; a wait longer than
	// it is cut to it. Content matchers still win when data arrives in
	// time. It applies only to the ports, never to content matches.
	SpeakFirst time.Duration
}

// Prefix returns a Matcher.Content function that accepts a first segment
// starting with any of prefixes, e.g. Prefix("\x16\x03") for a TLS record
// or Prefix("GET ", "POST ") for HTTP.
func Prefix(prefixes ...string) func(first []byte) bool {
	return func(first []byte) bool {
		for _, p := range prefixes {
			if bytes.HasPrefix(first, []byte(p)) {
				return true
			}
		}
		return false
	}
}

// Registry maps connections to Handlers: by content first, then by port,
// then to the fallback, each rule limited to its Matcher's prefixes. Order
// is data: content matchers run in the order of the Register calls in
// cmd/spoki, never in import order, and nothing registers itself in init.
//
// Pure-Spoki mode (PureAll, PureFor) switches interaction off: those
// connections always go to the fallback, after the Mux's full first-data
// wait, whatever their content or port.
//
// Configure everything before the Mux serves: Register, PureAll and PureFor
// must not run concurrently with Lookup. Lookup is safe for concurrent use.
type Registry struct {
	fallback Handler
	names    map[string]bool
	content  []contentRule
	ports    map[uint16][]portRule
	pureAll  bool
	pure     []netip.Prefix
}

type contentRule struct {
	match    func([]byte) bool
	prefixes []netip.Prefix
	h        Handler
}

type portRule struct {
	prefixes   []netip.Prefix
	speakFirst time.Duration
	h          Handler
}

// NewRegistry returns a Registry that serves connections nothing else
// claims with fallback (spoki's `generic`). It panics if fallback is nil or
// has an empty name.
func NewRegistry(fallback Handler) *Registry {
	r := &Registry{names: map[string]bool{}, ports: map[uint16][]portRule{}}
	r.addName(fallback)
	r.fallback = fallback
	return r
}

// Register adds h with its matcher m. It panics on a nil handler, an empty
// name, a name already registered (the fallback's included), an invalid
// prefix, a negative SpeakFirst, or a port already taken for an
// overlapping prefix: these are programmer errors found at start-up. A
// Matcher with neither Content nor Ports is allowed (the handler is
// switched off by configuration) and never matches.
func (r *Registry) Register(h Handler, m Matcher) {
	r.addName(h)
	prefixes := make([]netip.Prefix, len(m.Prefixes))
	for i, p := range m.Prefixes {
		if !p.IsValid() {
			panic(fmt.Sprintf("handlers: register %q: invalid prefix %v", h.Name(), p))
		}
		prefixes[i] = p.Masked()
	}
	if m.SpeakFirst < 0 {
		panic(fmt.Sprintf("handlers: register %q: negative SpeakFirst %v", h.Name(), m.SpeakFirst))
	}
	for _, p := range m.Ports {
		for _, o := range r.ports[p] {
			if Overlaps(o.prefixes, prefixes) {
				panic(fmt.Sprintf("handlers: register %q: port %d already served by %q", h.Name(), p, o.h.Name()))
			}
		}
	}
	if m.Content != nil {
		r.content = append(r.content, contentRule{m.Content, prefixes, h})
	}
	for _, p := range m.Ports {
		r.ports[p] = append(r.ports[p], portRule{prefixes, m.SpeakFirst, h})
	}
}

// PureAll switches interaction off for every connection: all go to the
// fallback (Spoki's behaviour: record the first payload, then reset).
func (r *Registry) PureAll() { r.pureAll = true }

// PureFor switches interaction off for connections to local addresses in
// prefixes, as PureAll does for all; it adds to earlier calls. It panics on
// an invalid prefix.
func (r *Registry) PureFor(prefixes ...netip.Prefix) {
	for _, p := range prefixes {
		if !p.IsValid() {
			panic(fmt.Sprintf("handlers: pure: invalid prefix %v", p))
		}
		r.pure = append(r.pure, p.Masked())
	}
}

func (r *Registry) addName(h Handler) {
	if h == nil {
		panic("handlers: register nil handler")
	}
	name := h.Name()
	if name == "" {
		panic(fmt.Sprintf("handlers: register %T: empty name", h))
	}
	if r.names[name] {
		panic(fmt.Sprintf("handlers: register %q: duplicate name", name))
	}
	r.names[name] = true
}

// Lookup returns the handler for a connection to local port port whose
// first segment is first (nil if none), ignoring the local address: rules
// limited to prefixes never match, and PureFor does not apply. See
// LookupAddr, which the Mux uses. It never returns nil.
func (r *Registry) Lookup(first []byte, port uint16) Handler {
	return r.LookupAddr(first, netip.AddrPortFrom(netip.Addr{}, port))
}

// LookupAddr returns the handler for a connection to local whose first
// segment is first (nil if none): the fallback in pure mode; else the first
// handler, in registration order, whose content matcher accepts first and
// whose prefixes hold local's address; else the handler of local's port for
// that address; else the fallback. It never returns nil.
func (r *Registry) LookupAddr(first []byte, local netip.AddrPort) Handler {
	if r.isPure(local.Addr()) {
		return r.fallback
	}
	if len(first) > 0 {
		for _, rule := range r.content {
			if contains(rule.prefixes, local.Addr()) && rule.match(first) {
				return rule.h
			}
		}
	}
	if pr, ok := r.portRule(local); ok {
		return pr.h
	}
	return r.fallback
}

// SpeakFirst returns how long the Mux should wait for the first segment of
// a connection to local before serving it with a nil First: the
// SpeakFirst of the port's handler, 0 (the Mux's own timeout) when there
// is none, or in pure mode.
func (r *Registry) SpeakFirst(local netip.AddrPort) time.Duration {
	if r.isPure(local.Addr()) {
		return 0
	}
	if pr, ok := r.portRule(local); ok {
		return pr.speakFirst
	}
	return 0
}

func (r *Registry) portRule(local netip.AddrPort) (portRule, bool) {
	for _, pr := range r.ports[local.Port()] {
		if contains(pr.prefixes, local.Addr()) {
			return pr, true
		}
	}
	return portRule{}, false
}

// IsPure reports whether connections to the local address a are in pure
// Spoki mode (PureAll, or a prefix of PureFor). It is safe for concurrent
// use, as Lookup is.
func (r *Registry) IsPure(a netip.Addr) bool { return r.isPure(a) }

func (r *Registry) isPure(a netip.Addr) bool {
	if r.pureAll {
		return true
	}
	a = a.Unmap()
	for _, p := range r.pure {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// contains reports whether a lies in one of prefixes; an empty list holds
// every address, the invalid (unknown) one included.
func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	if len(prefixes) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Overlaps reports whether two prefix lists share an address; an empty
// list is every address. It is the rule by which Register refuses a port
// served twice, for checkers that report the conflict before registering.
func Overlaps(a, b []netip.Prefix) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				return true
			}
		}
	}
	return false
}
