package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/internal/syncbuf"
	"github.com/spoki-telescope/spoki/records"
)

// seen is what a probe handler observed.
type seen struct {
	first []byte
	flow  records.Flow
}

// probe returns a handler named name that reports First and Flow on ch and
// returns its name as detail.
func probe(name string, ch chan<- seen) handlers.Handler {
	return handlers.Func(name, func(_ context.Context, c *handlers.Conn) (any, error) {
		ch <- seen{c.First(), c.Flow()}
		return name, nil
	})
}

// dial runs m.ServeConn on the server end of a new loopback pair whose flow
// has local port port, and returns the client end.
func dial(t *testing.T, m *handlers.Mux, port uint16) *net.TCPConn {
	t.Helper()
	server, client := handlerstest.TCPPair(t)
	go m.ServeConn(server, handlerstest.Flow(server, port))
	return client
}

func TestMuxDispatch(t *testing.T) {
	tests := []struct {
		name string
		port uint16
		send string // "" sends nothing: dispatch after FirstDataTimeout
		want string
	}{
		{"content before port", 80, "\x16\x03\x01\x00\x05hello", "tls"},
		{"port", 80, "GET / HTTP/1.0\r\n\r\n", "http"},
		{"port without data", 80, "", "http"},
		{"fallback", 5555, "hello", "generic"},
		{"fallback without data", 5555, "", "generic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan seen, 1)
			reg := handlers.NewRegistry(probe("generic", ch))
			reg.Register(probe("tls", ch), handlers.Matcher{Content: handlers.Prefix("\x16\x03")})
			reg.Register(probe("http", ch), handlers.Matcher{Ports: []uint16{80}})
			m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg, FirstDataTimeout: 50 * time.Millisecond})

			client := dial(t, m, tc.port)
			if tc.send != "" {
				if _, err := client.Write([]byte(tc.send)); err != nil {
					t.Fatal(err)
				}
			}
			got := <-ch
			s := rec.Wait(t, 1)[0]

			if s.AppProto != tc.want || s.Detail != tc.want {
				t.Errorf("app_proto, detail = %q, %v, want %q", s.AppProto, s.Detail, tc.want)
			}
			var want []byte
			if tc.send != "" {
				want = []byte(tc.send)
			}
			if !bytes.Equal(got.first, want) || (want == nil) != (got.first == nil) {
				t.Errorf("First() = %q, want %q", got.first, want)
			}
			if !bytes.Equal(s.Payload, want) || (want == nil) != (s.Payload == nil) {
				t.Errorf("Payload = %q, want %q", s.Payload, want)
			}
			if got.flow.Local.Port() != tc.port || s.Flow != got.flow {
				t.Errorf("Flow = %v, session flow %v, want local port %d", got.flow, s.Flow, tc.port)
			}
			if s.BytesToServer != int64(len(tc.send)) {
				t.Errorf("BytesToServer = %d, want %d", s.BytesToServer, len(tc.send))
			}
			st := m.Stats().Snapshot()
			wantTimeouts := uint64(0)
			if tc.send == "" {
				wantTimeouts = 1
			}
			if st.FirstDataTimeouts != wantTimeouts || st.Sessions != 1 || st.ByHandler[tc.want] != 1 {
				t.Errorf("Stats = %+v, want FirstDataTimeouts %d, 1 session by %q", st, wantTimeouts, tc.want)
			}
		})
	}
}

func TestMuxFirstDataClosed(t *testing.T) {
	ch := make(chan seen, 1)
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: handlers.NewRegistry(probe("generic", ch))})
	client := dial(t, m, 7)
	client.Close()
	if got := <-ch; got.first != nil {
		t.Errorf("First() = %q, want nil", got.first)
	}
	if s := rec.Wait(t, 1)[0]; s.Payload != nil || s.Error != "" {
		t.Errorf("session = %+v, want nil payload, no error", s)
	}
	if got := m.Stats().Snapshot().FirstDataClosed; got != 1 {
		t.Errorf("FirstDataClosed = %d, want 1", got)
	}
}

func TestMuxPanic(t *testing.T) {
	var logs syncbuf.Buffer
	reg := handlers.NewRegistry(handlers.Func("boom", func(_ context.Context, c *handlers.Conn) (any, error) {
		c.Write([]byte("partial"))
		panic("kaboom")
	}))
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{
		Registry: reg,
		Logger:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	client := dial(t, m, 23)
	client.Write([]byte("hi"))

	s := rec.Wait(t, 1)[0]
	if s.AppProto != "boom" || !strings.Contains(s.Error, "panic: kaboom") {
		t.Errorf("session app_proto, error = %q, %q, want boom, panic: kaboom", s.AppProto, s.Error)
	}
	if s.BytesToServer != 2 || s.BytesToClient != 7 {
		t.Errorf("bytes = %d/%d, want 2/7", s.BytesToServer, s.BytesToClient)
	}
	if got := m.Stats().Snapshot(); got.Panics != 1 || got.Errors != 0 || got.Sessions != 1 {
		t.Errorf("Stats = %+v, want 1 panic, 0 errors, 1 session", got)
	}
	if _, err := io.ReadAll(client); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read error = %v, want ECONNRESET", err)
	}
	var errLines int
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"level":"ERROR"`) {
			errLines++
			if !strings.Contains(line, `"stack":`) || !strings.Contains(line, `"handler":"boom"`) {
				t.Errorf("error line %s lacks stack or handler", line)
			}
		}
	}
	if errLines != 1 {
		t.Errorf("got %d error log lines, want 1:\n%s", errLines, logs.String())
	}
}

// echo copies the client's data back until EOF.
var echo = handlers.Func("echo", func(_ context.Context, c *handlers.Conn) (any, error) {
	_, err := io.Copy(c, c)
	return nil, err
})

func TestMuxByteCounters(t *testing.T) {
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: handlers.NewRegistry(echo)})
	client := dial(t, m, 7)
	client.Write([]byte("hello "))
	time.Sleep(20 * time.Millisecond) // a second segment, after the first read
	client.Write([]byte("telescope"))
	client.CloseWrite()
	got, err := io.ReadAll(client)
	// Every connection ends with a RST (endWithReset), after the client
	// had its chance to read what was written.
	if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || string(got) != "hello telescope" {
		t.Errorf("client read %q, %v, want %q then EOF or a reset", got, err, "hello telescope")
	}
	s := rec.Wait(t, 1)[0]
	if string(s.Payload) != "hello " || s.BytesToServer != 15 || s.BytesToClient != 15 || s.Error != "" {
		t.Errorf("session payload %q, bytes %d/%d, error %q; want %q, 15/15, none",
			s.Payload, s.BytesToServer, s.BytesToClient, s.Error, "hello ")
	}
}

// discardAll is a handler that reads until a budget (or the client) ends
// the connection.
func discardAll(_ context.Context, c *handlers.Conn) (any, error) {
	_, err := io.Copy(io.Discard, c)
	return nil, err
}

// trickle returns a client that sends a byte every 20 ms, n times, or until
// the connection fails.
func trickle(n int) func(net.Conn) {
	return func(c net.Conn) {
		for range n {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestMuxBudgets(t *testing.T) {
	tests := []struct {
		name    string
		cfg     handlers.MuxConfig
		h       handlers.HandlerFunc
		client  func(c net.Conn)
		wantErr string
		// cause returns the per-budget counter that must be 1 (the others 0).
		cause func(handlers.StatsSnapshot) uint64
	}{
		{
			name:    "idle timeout",
			cfg:     handlers.MuxConfig{IdleTimeout: 50 * time.Millisecond},
			h:       discardAll,
			client:  func(c net.Conn) { c.Write([]byte("x")) },
			wantErr: "idle timeout",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetIdle },
		},
		{
			name:    "total timeout",
			cfg:     handlers.MuxConfig{IdleTimeout: time.Second, TotalTimeout: 150 * time.Millisecond},
			h:       discardAll,
			client:  trickle(20),
			wantErr: "total timeout",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetTotal },
		},
		{
			// A slowloris: a byte every 20 ms never lets the idle budget
			// fire, and the request never completes.
			name:    "request timeout",
			cfg:     handlers.MuxConfig{IdleTimeout: time.Second, RequestTimeout: 150 * time.Millisecond},
			h:       discardAll,
			client:  trickle(50),
			wantErr: "request timeout",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetRequest },
		},
		{
			// A banner is no answer: a speak-first handler's client gets
			// the request budget too.
			name: "request timeout after a banner",
			cfg:  handlers.MuxConfig{IdleTimeout: time.Second, RequestTimeout: 150 * time.Millisecond, FirstDataTimeout: 10 * time.Millisecond},
			h: func(_ context.Context, c *handlers.Conn) (any, error) {
				if _, err := c.Write([]byte("220 banner\r\n")); err != nil {
					return nil, err
				}
				_, err := io.Copy(io.Discard, c)
				return nil, err
			},
			client: func(c net.Conn) {
				time.Sleep(30 * time.Millisecond)
				trickle(50)(c)
			},
			wantErr: "request timeout",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetRequest },
		},
		{
			name: "bytes to client",
			cfg:  handlers.MuxConfig{MaxBytesToClient: 1024},
			h: func(_ context.Context, c *handlers.Conn) (any, error) {
				_, err := c.Write(make([]byte, 2000))
				return nil, err
			},
			client:  func(c net.Conn) { c.Write([]byte("x")) },
			wantErr: "bytes to client cap",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetBytes },
		},
		{
			name:    "bytes to server",
			cfg:     handlers.MuxConfig{MaxFirstBytes: 8, MaxBytesToServer: 16},
			h:       discardAll,
			client:  func(c net.Conn) { c.Write(make([]byte, 100)) },
			wantErr: "bytes to server cap",
			cause:   func(s handlers.StatsSnapshot) uint64 { return s.BudgetBytes },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Registry = handlers.NewRegistry(handlers.Func("greedy", tc.h))
			m, rec := handlerstest.NewMux(t, tc.cfg)
			client := dial(t, m, 7)
			go tc.client(client)
			s := rec.Wait(t, 1)[0]
			if !strings.Contains(s.Error, tc.wantErr) || !strings.Contains(s.Error, handlers.ErrBudgetExceeded.Error()) {
				t.Errorf("session error = %q, want %q and %q", s.Error, tc.wantErr, handlers.ErrBudgetExceeded)
			}
			got := m.Stats().Snapshot()
			if got.Errors != 1 || got.BudgetExceeded != 1 {
				t.Errorf("Stats = %+v, want 1 error, 1 budget exceeded", got)
			}
			if tc.cause(got) != 1 || got.BudgetRequest+got.BudgetIdle+got.BudgetTotal+got.BudgetBytes != 1 {
				t.Errorf("Stats budgets request/idle/total/bytes = %d/%d/%d/%d, want 1 for %s only",
					got.BudgetRequest, got.BudgetIdle, got.BudgetTotal, got.BudgetBytes, tc.wantErr)
			}
			if tc.cfg.MaxBytesToClient != 0 && s.BytesToClient != tc.cfg.MaxBytesToClient {
				t.Errorf("BytesToClient = %d, want %d", s.BytesToClient, tc.cfg.MaxBytesToClient)
			}
			if tc.cfg.MaxBytesToServer != 0 && s.BytesToServer != tc.cfg.MaxBytesToServer {
				t.Errorf("BytesToServer = %d, want %d", s.BytesToServer, tc.cfg.MaxBytesToServer)
			}
		})
	}
}

// TestMuxRequestBudgetAnswered checks the two sides of the request budget:
// once the handler has answered what the client sent, a slow client is no
// longer cut by it (the total budget ends the connection); and a handler
// that swallows the budget's error still has the cut counted.
func TestMuxRequestBudgetAnswered(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		reg := handlers.NewRegistry(handlers.Func("chatty", func(_ context.Context, c *handlers.Conn) (any, error) {
			b := make([]byte, 64)
			if _, err := c.Read(b); err != nil {
				return nil, err
			}
			if _, err := c.Write([]byte("ok\r\n")); err != nil {
				return nil, err
			}
			_, err := io.Copy(io.Discard, c)
			return nil, err
		}))
		m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg, IdleTimeout: time.Second,
			RequestTimeout: 100 * time.Millisecond, TotalTimeout: 400 * time.Millisecond})
		go trickle(50)(dial(t, m, 7))
		s := rec.Wait(t, 1)[0]
		if !strings.Contains(s.Error, "total timeout") {
			t.Errorf("session error = %q, want the total timeout (the request was answered)", s.Error)
		}
		if got := m.Stats().Snapshot(); got.BudgetRequest != 0 || got.BudgetTotal != 1 {
			t.Errorf("budgets request/total = %d/%d, want 0/1", got.BudgetRequest, got.BudgetTotal)
		}
	})
	t.Run("swallowed", func(t *testing.T) {
		reg := handlers.NewRegistry(handlers.Func("quiet", func(_ context.Context, c *handlers.Conn) (any, error) {
			_, _ = io.Copy(io.Discard, c)
			return nil, nil
		}))
		m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg, IdleTimeout: time.Second,
			RequestTimeout: 100 * time.Millisecond})
		go trickle(50)(dial(t, m, 7))
		s := rec.Wait(t, 1)[0]
		if s.Error != "" {
			t.Errorf("session error = %q, want none (the handler swallowed it)", s.Error)
		}
		if got := m.Stats().Snapshot(); got.BudgetRequest != 1 || got.Errors != 0 {
			t.Errorf("budget request = %d, errors = %d, want 1, 0", got.BudgetRequest, got.Errors)
		}
	})
}

// TestConnHandlerDeadline checks that a handler's own, shorter deadline is
// not reported as a Mux budget.
func TestConnHandlerDeadline(t *testing.T) {
	reg := handlers.NewRegistry(handlers.Func("short", func(_ context.Context, c *handlers.Conn) (any, error) {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		buf := make([]byte, 10)
		n, err := c.Read(buf) // the peeked first segment, whatever the deadline
		if n != 3 || err != nil {
			return nil, err
		}
		_, err = c.Read(buf)
		if errors.Is(err, handlers.ErrBudgetExceeded) {
			return nil, err
		}
		return isTimeout(err), nil
	}))
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg})
	client := dial(t, m, 7)
	client.Write([]byte("abc"))
	s := rec.Wait(t, 1)[0]
	if s.Error != "" || s.Detail != true {
		t.Errorf("session detail, error = %v, %q, want true (timeout), none", s.Detail, s.Error)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestConnResetUnsupported(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	c := handlers.NewConn(server, records.Flow{}, nil)
	if err := c.Reset(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Reset() on net.Pipe = %v, want ErrUnsupported", err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write after Reset = %v, want closed pipe", err)
	}
}

func TestNewMuxErrors(t *testing.T) {
	reg := handlers.NewRegistry(echo)
	emit := func(*records.Session) {}
	tests := []struct {
		name string
		cfg  handlers.MuxConfig
		want string
	}{
		{"no registry", handlers.MuxConfig{Emit: emit}, "no Registry"},
		{"no emit", handlers.MuxConfig{Registry: reg}, "no Emit"},
		{"negative", handlers.MuxConfig{Registry: reg, Emit: emit, IdleTimeout: -1}, "negative"},
		{"server cap below first", handlers.MuxConfig{Registry: reg, Emit: emit, MaxFirstBytes: 100, MaxBytesToServer: 10}, "below MaxFirstBytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handlers.NewMux(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewMux(%+v) = %v, want error with %q", tc.cfg, err, tc.want)
			}
		})
	}
}

// TestMuxEndsWithReset checks that a handler that returns without resetting
// still ends in a RST, as Spoki ends every connection, and that the client
// first reads everything the handler wrote.
func TestMuxEndsWithReset(t *testing.T) {
	banner := handlers.Func("banner", func(_ context.Context, c *handlers.Conn) (any, error) {
		_, err := io.WriteString(c, "220 ready\r\n")
		return nil, err
	})
	m, _ := handlerstest.NewMux(t, handlers.MuxConfig{Registry: handlers.NewRegistry(banner), FirstDataTimeout: 50 * time.Millisecond})
	client := dial(t, m, 21)
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(client, buf, len("220 ready\r\n"))
	if err != nil || string(buf[:n]) != "220 ready\r\n" {
		t.Fatalf("client read %q, %v, want the banner", buf[:n], err)
	}
	// The handler is done: a FIN tells the client it has everything.
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err = client.Read(buf); err != io.EOF {
		t.Fatalf("after the banner: %v, want EOF", err)
	}
	// The client does not close: after LingerTimeout the Mux resets.
	start := time.Now()
	if _, err = client.Write([]byte("still here\r\n")); err == nil {
		time.Sleep(handlers.LingerTimeout + 200*time.Millisecond)
		_, err = client.Write([]byte("again\r\n"))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Errorf("writing %v after the banner: %v, want a connection reset", time.Since(start), err)
	}
}
