package handlers_test

import (
	"context"
	"testing"

	"github.com/spoki-telescope/spoki/handlers"
)

// nop returns a handler named name that does nothing.
func nop(name string) handlers.Handler {
	return handlers.Func(name, func(context.Context, *handlers.Conn) (any, error) { return nil, nil })
}

func testRegistry() *handlers.Registry {
	r := handlers.NewRegistry(nop("generic"))
	r.Register(nop("tls"), handlers.Matcher{Content: handlers.Prefix("\x16\x03")})
	r.Register(nop("http"), handlers.Matcher{Content: handlers.Prefix("GET ", "POST "), Ports: []uint16{80, 8080}})
	r.Register(nop("telnet"), handlers.Matcher{Ports: []uint16{23}})
	r.Register(nop("off"), handlers.Matcher{})
	return r
}

func TestLookup(t *testing.T) {
	r := testRegistry()
	tests := []struct {
		name  string
		first []byte
		port  uint16
		want  string
	}{
		{"content before port", []byte("\x16\x03\x01\x02\x00"), 80, "tls"},
		{"content on unknown port", []byte("GET / HTTP/1.1\r\n"), 9999, "http"},
		{"content on other handler's port", []byte("GET /"), 23, "http"},
		{"port when content unknown", []byte("\x00\x01"), 23, "telnet"},
		{"port when no data", nil, 8080, "http"},
		{"empty data counts as none", []byte{}, 23, "telnet"},
		{"fallback", []byte("hello"), 9999, "generic"},
		{"fallback with no data", nil, 0, "generic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Lookup(tc.first, tc.port).Name(); got != tc.want {
				t.Errorf("Lookup(%q, %d) = %q, want %q", tc.first, tc.port, got, tc.want)
			}
		})
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		do   func()
	}{
		{"nil fallback", func() { handlers.NewRegistry(nil) }},
		{"empty fallback name", func() { handlers.NewRegistry(nop("")) }},
		{"nil handler", func() { testRegistry().Register(nil, handlers.Matcher{}) }},
		{"empty name", func() { testRegistry().Register(nop(""), handlers.Matcher{Ports: []uint16{1}}) }},
		{"duplicate name", func() { testRegistry().Register(nop("tls"), handlers.Matcher{Ports: []uint16{443}}) }},
		{"fallback's name", func() { testRegistry().Register(nop("generic"), handlers.Matcher{}) }},
		{"port taken", func() { testRegistry().Register(nop("www"), handlers.Matcher{Ports: []uint16{80}}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic, want one", tc.name)
				}
			}()
			tc.do()
		})
	}
}
