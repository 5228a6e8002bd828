package promstats

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// testStats is a stats struct with one counter.
type testStats struct {
	Received uint64 `line:"received" metric:"netstack_packets_received_total" help:"Packets received."`
}

// TestMetricsServerMoves checks that the server follows Listen's address,
// and keeps the old one when the new one cannot be bound.
func TestMetricsServerMoves(t *testing.T) {
	tel := New(func() []any { return []any{testStats{Received: 1}} }, testStats{})
	m := NewServer(tel.Handler(), slog.New(slog.DiscardHandler))
	defer m.Close()
	scrape := func(addr string) error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "spoki_netstack_packets_received_total") {
			t.Errorf("scrape of %s lacks spoki metrics", addr)
		}
		return nil
	}
	if err := m.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	// Port 0 picks a free port but the server does not say which: move to
	// a fixed free one found the same way.
	first := freeAddr(t)
	if err := m.Listen(first); err != nil {
		t.Fatal(err)
	}
	if err := scrape(first); err != nil {
		t.Fatalf("scrape %s: %v", first, err)
	}
	if err := m.Listen("256.0.0.1:1"); err == nil {
		t.Errorf("listen(bad address) = nil, want an error")
	}
	if err := scrape(first); err != nil {
		t.Errorf("after a failed move, scrape %s: %v, want the old server", first, err)
	}
	second := freeAddr(t)
	if err := m.Listen(second); err != nil {
		t.Fatal(err)
	}
	if err := scrape(second); err != nil {
		t.Errorf("scrape %s: %v", second, err)
	}
	if err := scrape(first); err == nil {
		t.Errorf("the old address still answers after the move")
	}
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
