package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "mqtt" object of a session event: the CONNECT's fields,
// and the types of the packets read after the CONNACK.
type Detail struct {
	Connect
	Then []string `json:"then,omitempty"`
}

// Serve implements handlers.Handler: it reads the CONNECT, answers CONNACK,
// then reads (and names) what follows until the client disconnects, falls
// silent or reaches MaxPackets, and resets the connection.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	defer c.Reset() // end like Spoki; after a hang-up it is harmless
	if c.First() == nil {
		return nil, nil // MQTT clients speak first: nothing to record
	}
	// One bufio.Reader for the whole exchange, never one per read.
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
	first, body, err := ReadPacket(r, h.maxPacketBytes)
	if err != nil {
		return nil, endErr(err)
	}
	if first>>4 != typeConnect {
		return nil, fmt.Errorf("%w: first packet is %s", ErrMalformed, TypeName(first))
	}
	conn, err := ParseConnect(body)
	if err != nil {
		return nil, err
	}
	d := Detail{Connect: conn}
	if _, err := c.Write(Connack(conn.ProtocolLevel)); err != nil {
		return d, endErr(err)
	}
	for len(d.Then) < h.maxPackets && ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		first, _, err := ReadPacket(r, h.maxPacketBytes)
		if err != nil {
			return d, endErr(err)
		}
		d.Then = append(d.Then, TypeName(first))
		if first>>4 == typeDisconnect {
			break
		}
	}
	return d, nil
}

// endErr maps the error that ended the exchange to Serve's result: the
// client's hang-up and the handler's own read timeout are normal ends.
func endErr(err error) error { return handlers.EndErr("mqtt", err, ErrMalformed) }
