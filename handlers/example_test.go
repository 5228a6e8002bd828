package handlers_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/telnet"
	"github.com/spoki-telescope/spoki/handlers/tls"
	"github.com/spoki-telescope/spoki/records"
)

// bannerName is the toy handler's app_proto, typed once.
const bannerName = "banner"

// banner greets the client with what it sent and where it connected: a
// whole protocol handler in a few lines.
func banner(_ context.Context, c *handlers.Conn) (any, error) {
	f := c.Flow()
	_, err := fmt.Fprintf(c, "hello %s, you sent %q to port %d\n", f.Remote.Addr(), c.First(), f.Local.Port())
	return map[string]int{"greeted": 1}, err
}

// Example adds a handler to spoki without touching the Mux: build the
// Registry with generic as fallback, Register the handler for its port and
// hand connections to Mux.ServeConn, as the netstack does.
func Example() {
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(handlers.Func(bannerName, banner), handlers.Matcher{Ports: []uint16{2323}})

	sessions := make(chan *records.Session, 1)
	mux, err := handlers.NewMux(handlers.MuxConfig{
		Registry: reg,
		Emit:     func(s *records.Session) { sessions <- s }, // cmd/spoki passes the event sink
	})
	if err != nil {
		panic(err)
	}

	// The netstack would hand over a gVisor conn; a pipe will do.
	server, client := net.Pipe()
	flow := records.Flow{
		Remote: netip.MustParseAddrPort("192.0.2.1:40000"),
		Local:  netip.MustParseAddrPort("198.51.100.7:2323"),
	}
	go mux.ServeConn(server, flow)

	client.Write([]byte("hi"))
	reply, _ := io.ReadAll(client) // until the Mux closes the conn
	fmt.Print(string(reply))
	s := <-sessions
	fmt.Printf("session app_proto=%s payload=%q to_server=%d to_client=%d %s=%v\n",
		s.AppProto, s.Payload, s.BytesToServer, s.BytesToClient, s.AppProto, s.Detail)
	// Output:
	// hello 192.0.2.1, you sent "hi" to port 2323
	// session app_proto=banner payload="hi" to_server=2 to_client=44 banner=map[greeted:1]
}

// The banner handler below is the one handlers/README.md walks through; the
// README shows this code as it is here, and TestReadmeSnippets keeps the two
// the same. In a package of its own (handlers/banner) the names would drop
// the prefix: banner.Name, banner.Config, banner.New.

// BannerName is the banner handler's app_proto and detail key.
const BannerName = "banner"

// BannerConfig configures the banner handler; the zero value is usable.
type BannerConfig struct {
	// Text is the greeting; empty means "220 ready\r\n".
	Text string
}

// BannerDetail is the "banner" object of the session event.
type BannerDetail struct {
	FirstLen int `json:"first_len"`
}

// Banner greets the client and records how much it sent first. It is safe
// for concurrent use.
type Banner struct{ text string }

var _ handlers.Handler = (*Banner)(nil)

// NewBanner returns a banner handler.
func NewBanner(cfg BannerConfig) *Banner {
	if cfg.Text == "" {
		cfg.Text = "220 ready\r\n"
	}
	return &Banner{text: cfg.Text}
}

// Name implements handlers.Handler.
func (h *Banner) Name() string { return BannerName }

// Serve implements handlers.Handler.
func (h *Banner) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	if _, err := io.WriteString(c, h.text); err != nil {
		return nil, err
	}
	_ = c.Reset() // end like Spoki, with a RST
	return BannerDetail{FirstLen: len(c.First())}, nil
}

// ExampleRegistry builds a Registry as cmd/spoki does (content matchers in
// registration order, then ports, then the fallback), with a speak-first
// handler limited to one half of a prefix and pure Spoki mode on the other
// half, and serves one connection through the Mux.
func ExampleRegistry() {
	reg := handlers.NewRegistry(generic.New(generic.Config{})) // the fallback
	reg.Register(NewBanner(BannerConfig{}), handlers.Matcher{Ports: []uint16{21, 2121}})
	reg.Register(tls.New(tls.Config{}), handlers.Matcher{Content: tls.Match, Ports: tls.Ports})
	reg.Register(telnet.New(telnet.Config{}), handlers.Matcher{
		Content: telnet.Match, Ports: telnet.Ports, SpeakFirst: telnet.SpeakFirst,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")},
	})
	reg.PureFor(netip.MustParsePrefix("198.51.100.128/25")) // this half acts like Spoki

	sessions := make(chan *records.Session, 1)
	mux, err := handlers.NewMux(handlers.MuxConfig{
		Registry: reg,
		Emit:     func(s *records.Session) { sessions <- s }, // cmd/spoki passes the event sink
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	// The netstack takes mux.ServeConn, a func(net.Conn, records.Flow), at
	// construction and calls it on a goroutine per accepted connection.

	hello := []byte("\x16\x03\x01\x00\x05hello") // a TLS record
	for _, to := range []string{"198.51.100.7:21", "198.51.100.7:80", "198.51.100.7:23", "198.51.100.200:23"} {
		local := netip.MustParseAddrPort(to)
		fmt.Printf("%s: TLS %s, silent %s (waits %v)\n", to,
			reg.LookupAddr(hello, local).Name(), reg.LookupAddr(nil, local).Name(), reg.SpeakFirst(local))
	}

	server, client := net.Pipe()
	go mux.ServeConn(server, records.Flow{
		Remote: netip.MustParseAddrPort("192.0.2.1:40000"),
		Local:  netip.MustParseAddrPort("198.51.100.7:21"),
	})
	client.Write([]byte("USER root\r\n"))
	reply, _ := io.ReadAll(client)
	s := <-sessions
	fmt.Printf("%q; session app_proto=%s %s=%+v\n", reply, s.AppProto, s.AppProto, s.Detail)
	// Output:
	// 198.51.100.7:21: TLS tls, silent banner (waits 0s)
	// 198.51.100.7:80: TLS tls, silent generic (waits 0s)
	// 198.51.100.7:23: TLS tls, silent telnet (waits 1s)
	// 198.51.100.200:23: TLS generic, silent generic (waits 0s)
	// "220 ready\r\n"; session app_proto=banner banner={FirstLen:11}
}

// TestReadmeSnippets keeps handlers/README.md true: every Go block in it
// must be code that compiles, that is, a run of lines (compared without
// their indentation) of some Go file of the repository. The banner handler
// and the Registry set-up are this file's; the knownHandlers entry is
// cmd/spoki's; the mqtt code is handlers/mqtt's.
func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeGoBlocks(string(readme))
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go blocks")
	}
	var sources [][]string
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sources = append(sources, trimmedLines(string(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range blocks {
		want := trimmedLines(blk.code)
		found := false
		for _, src := range sources {
			if containsRun(src, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README.md line %d: Go block is not code of the repository (copy it from the Go file it shows):\n%s", blk.line, blk.code)
		}
	}
}

// readmeBlock is one fenced Go block and the line its fence opens on.
type readmeBlock struct {
	line int
	code string
}

// readmeGoBlocks returns the ```go blocks of a Markdown text, indented
// (list item) fences included.
func readmeGoBlocks(md string) []readmeBlock {
	var out []readmeBlock
	var cur *strings.Builder
	start := 0
	for i, l := range strings.Split(md, "\n") {
		fence := strings.TrimSpace(l)
		switch {
		case cur == nil && fence == "```go":
			cur, start = &strings.Builder{}, i+1
		case cur != nil && fence == "```":
			out = append(out, readmeBlock{start, cur.String()})
			cur = nil
		case cur != nil:
			cur.WriteString(l)
			cur.WriteByte('\n')
		}
	}
	return out
}

// trimmedLines splits s into lines without leading and trailing blanks,
// dropping empty lines.
func trimmedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsRun reports whether want occurs in src as consecutive lines.
func containsRun(src, want []string) bool {
	for i := 0; i+len(want) <= len(src); i++ {
		if slices.Equal(src[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
