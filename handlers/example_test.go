package handlers_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
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
