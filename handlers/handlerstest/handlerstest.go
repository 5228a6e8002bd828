// Package handlerstest holds test doubles for handlers, as httptest does
// for net/http: a Recorder that collects the sessions a Mux emits (and
// Events its other event lines), a Mux
// served on a loopback listener, loopback TCP pairs with a matching
// records.Flow, so that a handler's tests run a real Mux over real sockets
// without root, and RequireTool for the tests that drive real clients.
package handlerstest

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/records"
)

// WaitTimeout is how long Recorder.Wait waits before failing the test.
const WaitTimeout = 5 * time.Second

// Recorder collects sessions; pass its Emit method as MuxConfig.Emit.
type Recorder struct {
	mu       sync.Mutex
	sessions []*records.Session
	changed  chan struct{} // closed and replaced on every Emit
}

// Emit records s. It is safe for concurrent use.
func (r *Recorder) Emit(s *records.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, s)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Sessions returns the sessions recorded so far.
func (r *Recorder) Sessions() []*records.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*records.Session(nil), r.sessions...)
}

// Wait returns the first n sessions once they are recorded, failing the
// test if that takes longer than WaitTimeout.
func (r *Recorder) Wait(t testing.TB, n int) []*records.Session {
	t.Helper()
	timeout := time.After(WaitTimeout)
	for {
		r.mu.Lock()
		if len(r.sessions) >= n {
			s := append([]*records.Session(nil), r.sessions[:n]...)
			r.mu.Unlock()
			return s
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("handlerstest: got %d sessions after %v, want %d", len(r.Sessions()), WaitTimeout, n)
		}
	}
}

// Events collects the extra event lines a Mux writes (Conn.Emit), decoded;
// pass its Emit method as MuxConfig.EmitEvent.
type Events struct {
	mu    sync.Mutex
	lines []map[string]any
}

// Emit records line, which must be a JSON object: it panics otherwise. It
// is safe for concurrent use.
func (e *Events) Emit(_ time.Time, line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		panic(err)
	}
	e.mu.Lock()
	e.lines = append(e.lines, m)
	e.mu.Unlock()
}

// Lines returns the event lines recorded so far.
func (e *Events) Lines() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]map[string]any(nil), e.lines...)
}

// NewMux returns the Mux of cfg, its Emit replaced by a new Recorder's,
// and that Recorder; it fails the test if handlers.NewMux fails.
func NewMux(t testing.TB, cfg handlers.MuxConfig) (*handlers.Mux, *Recorder) {
	t.Helper()
	rec := &Recorder{}
	cfg.Emit = rec.Emit
	m, err := handlers.NewMux(cfg)
	if err != nil {
		t.Fatalf("handlerstest: NewMux: %v", err)
	}
	return m, rec
}

// Serve runs the Mux of cfg (built by NewMux, so its sessions go to rec)
// behind a listener on 127.0.0.1, closed when the test ends. Each
// connection is served on a goroutine of its own with the Flow
// Flow(c, port), so that dispatch by port sees port. It returns the
// listener's address ("127.0.0.1:PORT") and the Recorder.
func Serve(t testing.TB, cfg handlers.MuxConfig, port uint16) (addr string, rec *Recorder) {
	t.Helper()
	m, rec := NewMux(t, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("handlerstest: listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for { // clients may retry, or open one connection per command
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.ServeConn(c, Flow(c, port))
		}
	}()
	return ln.Addr().String(), rec
}

// RequireTool returns the path of the client program name that a test
// drives. Without it the test is skipped, except under CI=true (where .ci
// installs the clients), where it fails. pkg names the Debian package that
// provides it.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (Debian %s, required under CI=true): %v", name, pkg, err)
		}
		t.Skipf("%s not installed (Debian %s)", name, pkg)
	}
	return p
}

// TCPPair returns the two ends of a loopback TCP connection on 127.0.0.1:
// server is what the netstack would hand to the Mux, client the scanner's
// end. Both are closed when the test ends.
func TCPPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("handlerstest: listen: %v", err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("handlerstest: dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatalf("handlerstest: accept: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// Flow returns the Flow of the server end c, as the netstack would build
// it, with the local port replaced by port unless port is 0 (loopback ports
// are ephemeral; dispatch tests need a chosen one).
func Flow(c net.Conn, port uint16) records.Flow {
	local := addrPort(c.LocalAddr())
	if port != 0 {
		local = netip.AddrPortFrom(local.Addr(), port)
	}
	return records.Flow{Remote: addrPort(c.RemoteAddr()), Local: local, Accepted: time.Now()}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String()) // net.Pipe's "pipe" yields the zero AddrPort
	return ap
}
