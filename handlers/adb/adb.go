package adb

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// deviceVersion is the protocol version of the device CNXN: adbd's
// A_VERSION, which lets hosts skip checksums.
const deviceVersion = 0x01000001

// Detail is the "adb" object of a session event.
type Detail struct {
	// Version and MaxData are the host CNXN's arg0 and arg1.
	Version uint32 `json:"version"`
	MaxData uint32 `json:"maxdata"`
	// Banner is the host CNXN's data ("host::features=...").
	Banner string `json:"banner"`
	// Services are the OPEN messages' services, in order.
	Services []string `json:"services"`
	// Writes are the data the host wrote to interactive shells.
	Writes []string `json:"writes,omitempty"`
	// Truncated is set when a cap cut a record or the exchange.
	Truncated bool `json:"truncated"`
}

// Serve implements handlers.Handler: it answers the host's CNXN with the
// device CNXN, accepts every OPEN (closing it at once unless it is an
// interactive shell), and records what the host asks for, until the host
// hangs up, falls silent for ReadTimeout or reaches MaxMessages.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	defer c.Reset() // end like Spoki; after a hang-up it is harmless
	if c.First() == nil {
		return nil, nil // hosts speak first: nothing to record
	}
	r := bufio.NewReader(c)
	d := Detail{Services: []string{}}
	shells := map[uint32]bool{} // our ids of open interactive shells; at most MaxMessages
	nextID := uint32(1)
	for i := 0; i < h.maxMessages; i++ {
		if ctx.Err() != nil {
			return d, nil
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		m, err := ReadMessage(r, maxDataBytes)
		if err != nil {
			return d, endErr(err)
		}
		if i == 0 && m.Command != CmdCNXN {
			return nil, fmt.Errorf("%w: first message is %s", ErrMalformed, CommandName(m.Command))
		}
		var out []byte
		switch m.Command {
		case CmdCNXN, CmdAUTH:
			// Never ask for AUTH: an unprotected device is what bots
			// look for, and a host's AUTH gets the CNXN it waits for.
			if m.Command == CmdCNXN {
				d.Version, d.MaxData = m.Arg0, m.Arg1
				d.Banner = h.record(m.Data, &d.Truncated)
			}
			out = Message{CmdCNXN, deviceVersion, deviceMaxData, h.banner}.Encode()
		case CmdOPEN:
			svc := h.record(trimNUL(m.Data), &d.Truncated)
			if len(d.Services) < h.maxServices {
				d.Services = append(d.Services, svc)
			} else {
				d.Truncated = true
			}
			// OPEN's arg0 is the host's stream id; OKAY tells it ours.
			id := nextID
			nextID++
			out = Message{CmdOKAY, id, m.Arg0, nil}.Encode()
			if interactive(svc) {
				shells[id] = true
			} else {
				// The command "ran" and printed nothing.
				out = append(out, Message{CmdCLSE, id, m.Arg0, nil}.Encode()...)
			}
		case CmdWRTE:
			// WRTE's arg1 is our stream id; every WRTE wants an OKAY.
			if shells[m.Arg1] {
				if len(d.Writes) < h.maxServices {
					d.Writes = append(d.Writes, h.record(m.Data, &d.Truncated))
				} else {
					d.Truncated = true
				}
			}
			out = Message{CmdOKAY, m.Arg1, m.Arg0, nil}.Encode()
		case CmdCLSE:
			delete(shells, m.Arg1)
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return d, endErr(err)
			}
		}
	}
	d.Truncated = true
	return d, nil
}

// interactive reports whether svc opens a shell with no command, whose
// commands then come as WRTE data.
func interactive(svc string) bool {
	return svc == "shell:" || (strings.HasPrefix(svc, "shell,") && strings.HasSuffix(svc, ":"))
}

// trimNUL drops the NUL that terminates a service name.
func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// record returns a copy of b cut to MaxRecordBytes, setting *cut if it had
// to cut.
func (h *Handler) record(b []byte, cut *bool) string {
	if len(b) > h.maxRecordBytes {
		*cut = true
		b = b[:h.maxRecordBytes]
	}
	return string(b)
}

// endErr maps the error that ended the exchange to Serve's result: the
// host's hang-up and the handler's own read timeout are normal ends.
func endErr(err error) error { return handlers.EndErr("adb", err, ErrMalformed) }
