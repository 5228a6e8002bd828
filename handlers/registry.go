package handlers

import (
	"bytes"
	"fmt"
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
	// handler.
	Ports []uint16
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
// then to the fallback. Order is data: content matchers run in the order of
// the Register calls in cmd/spoki, never in import order, and nothing
// registers itself in init.
//
// Register everything before the Mux serves: Register must not run
// concurrently with Lookup. Lookup is safe for concurrent use.
type Registry struct {
	fallback Handler
	names    map[string]bool
	content  []contentRule
	ports    map[uint16]Handler
}

type contentRule struct {
	match func([]byte) bool
	h     Handler
}

// NewRegistry returns a Registry that serves connections nothing else
// claims with fallback (spoki's `generic`). It panics if fallback is nil or
// has an empty name.
func NewRegistry(fallback Handler) *Registry {
	r := &Registry{names: map[string]bool{}, ports: map[uint16]Handler{}}
	r.addName(fallback)
	r.fallback = fallback
	return r
}

// Register adds h with its matcher m. It panics on a nil handler, an empty
// name, a name already registered (the fallback's included) or a port
// already taken: these are programmer errors found at start-up. A Matcher
// with neither Content nor Ports is allowed (the handler is switched off by
// configuration) and never matches.
func (r *Registry) Register(h Handler, m Matcher) {
	r.addName(h)
	for _, p := range m.Ports {
		if o, ok := r.ports[p]; ok {
			panic(fmt.Sprintf("handlers: register %q: port %d already served by %q", h.Name(), p, o.Name()))
		}
	}
	if m.Content != nil {
		r.content = append(r.content, contentRule{m.Content, h})
	}
	for _, p := range m.Ports {
		r.ports[p] = h
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
// first segment is first (nil if none): the first handler, in registration
// order, whose content matcher accepts first; else the handler of port;
// else the fallback. It never returns nil.
func (r *Registry) Lookup(first []byte, port uint16) Handler {
	if len(first) > 0 {
		for _, rule := range r.content {
			if rule.match(first) {
				return rule.h
			}
		}
	}
	if h, ok := r.ports[port]; ok {
		return h
	}
	return r.fallback
}
