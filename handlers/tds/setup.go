// Package tds engages Microsoft SQL Server scanners and brute-forcers
// (TCP 1433), which speak TDS (MS-TDS): it reads the client's PRELOGIN,
// answers as a SQL Server 2019 that does not support encryption, then
// reads the LOGIN7 that follows, records its host, user and application
// names and its password (TDS only obfuscates it), and answers "Login
// failed" (error 18456), as a server with a wrong password would.
//
// Ports: 1433 (Ports). Content: a PRELOGIN packet from any port (Match).
//
// Session fields: app_proto "tds"; the "tds" object is Detail:
// {"version": "9.0.0.0", "encryption": "off", "instance": "MSSQLServer",
// "thread_id": N, "mars": bool, "login": {"tds_version": "0x74000004",
// "hostname": "...", "username": "sa", "password": "...", "app_name":
// "...", "server_name": "...", "library": "...", "language": "...",
// "database": "..."}}: the PRELOGIN's client version, encryption option,
// instance name, thread id and MARS flag, and the LOGIN7's fields (login is
// omitted if none came). A client that sends LOGIN7 without PRELOGIN (TDS
// 7.0) has only login.
//
// Budgets: a message (one or more packets up to the end-of-message flag)
// may be at most MaxMessageBytes (8 KiB); the handler reads two messages
// at most, waits ReadTimeout (10 s) for each, and after its last answer
// waits up to a second for the client to hang up before resetting. The
// Mux's idle, total and byte budgets apply on top.
package tds

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "tds"

// Ports are the ports the handler usually serves.
var Ports = []uint16{1433}

// Defaults of Config's zero values.
const (
	DefaultMaxMessageBytes = 8 << 10
	DefaultReadTimeout     = 10 * time.Second
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// MaxMessageBytes caps one TDS message, all its packets' payloads.
	MaxMessageBytes int
	// ReadTimeout is how long the handler waits for each message.
	ReadTimeout time.Duration
}

// Handler is the tds handler. It is safe for concurrent use.
type Handler struct {
	maxMessageBytes int
	readTimeout     time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns a tds Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{maxMessageBytes: cfg.MaxMessageBytes, readTimeout: cfg.ReadTimeout}
	h.maxMessageBytes = handlers.OrDefault(h.maxMessageBytes, DefaultMaxMessageBytes)
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: a whole PRELOGIN packet
// header (type 0x12, end of message, a length between the header's and
// 4 KiB, as clients send).
func Match(first []byte) bool {
	if len(first) < headerBytes || first[0] != TypePrelogin || first[1]&statusEOM == 0 {
		return false
	}
	n := int(first[2])<<8 | int(first[3])
	return n > headerBytes && n <= 4096
}
