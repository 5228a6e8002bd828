// Package mqtt records MQTT CONNECT packets, the credentials and client ids
// that IoT botnets try on brokers, and accepts them with a CONNACK so that
// the client goes on to show what it publishes or subscribes to. It is also
// the worked example of handlers/README.md: a whole protocol in one
// package, added to spoki with one Register line.
//
// Ports: 1883 (Ports). Content: an MQTT CONNECT from any port (Match).
//
// Session fields: app_proto "mqtt"; the "mqtt" object is Detail:
// {"protocol_name": "MQTT", "protocol_level": 4, "client_id": "...",
// "username": "...", "password": "...", "has_username": bool,
// "has_password": bool, "will_topic": "...", "keep_alive": N,
// "then": ["PUBLISH", "DISCONNECT"]}: the CONNECT's fields, and the types
// of the packets that followed the CONNACK.
//
// Budgets: a packet may be at most MaxPacketBytes (4 KiB), which also
// bounds every recorded string; at most MaxPackets (8) packets are read
// after the CONNECT; the handler waits ReadTimeout (10 s) for each. The
// Mux's idle, total and byte budgets apply on top. A client that is not
// speaking MQTT, or exceeds a cap, is reset.
package mqtt

import (
	"bytes"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "mqtt"

// Ports are the ports the handler usually serves.
var Ports = []uint16{1883}

// Defaults of Config's zero values.
const (
	DefaultMaxPacketBytes = 4096
	DefaultMaxPackets     = 8
	DefaultReadTimeout    = 10 * time.Second
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// MaxPacketBytes caps one packet, fixed header excluded.
	MaxPacketBytes int
	// MaxPackets caps the packets read after the CONNECT.
	MaxPackets int
	// ReadTimeout is how long the handler waits for each packet.
	ReadTimeout time.Duration
}

// Handler is the mqtt handler. It is safe for concurrent use.
type Handler struct {
	maxPacketBytes, maxPackets int
	readTimeout                time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns an mqtt Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{maxPacketBytes: cfg.MaxPacketBytes, maxPackets: cfg.MaxPackets, readTimeout: cfg.ReadTimeout}
	h.maxPacketBytes = handlers.OrDefault(h.maxPacketBytes, DefaultMaxPacketBytes)
	h.maxPackets = handlers.OrDefault(h.maxPackets, DefaultMaxPackets)
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: it accepts a
// first segment that starts with an MQTT CONNECT (type 1, then a remaining
// length of one to four bytes, then the protocol name "MQTT" or, for MQTT
// 3.1, "MQIsdp"). handlers.Prefix cannot say this, as the length varies.
func Match(first []byte) bool {
	if len(first) < 2 || first[0] != 0x10 {
		return false
	}
	for i := 1; i < len(first) && i <= 4; i++ {
		if first[i]&0x80 == 0 { // last byte of the remaining length
			rest := first[i+1:]
			return bytes.HasPrefix(rest, []byte("\x00\x04MQTT")) || bytes.HasPrefix(rest, []byte("\x00\x06MQIsdp"))
		}
	}
	return false
}
