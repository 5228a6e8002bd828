// Package redis engages Redis scanners: it reads RESP and inline commands,
// answers each as an unprotected Redis 5 server would (PONG, an INFO
// server section, OK for SET, CONFIG SET and SLAVEOF, empty lists for KEYS,
// an unknown-command error otherwise) and records every command, which is
// how the usual Redis attacks (cron or SSH key files written through CONFIG
// SET dir and SAVE, rogue-master SLAVEOF, MODULE LOAD) show their hand.
//
// Ports: 6379 (Ports). Content: a RESP command array from any port (Match).
//
// Session fields: app_proto "redis"; the "redis" object is Detail:
// {"commands": [["CONFIG","SET","dir","/var/spool/cron"], ...],
// "truncated": bool}. Arguments are recorded as sent (JSON replaces invalid
// UTF-8); truncated says a cap below cut something.
//
// Budgets: at most MaxCommands commands (32) are answered and recorded,
// each with at most MaxArgs arguments (16) of at most MaxArgBytes (512)
// bytes; a bulk string may announce at most 64 KiB, an array 1024
// elements, an inline command 4 KiB. The handler waits ReadTimeout (10 s)
// for each command; the Mux's idle, total and byte budgets apply on top.
// The client's hang-up, silence or the command cap end the session
// normally, a protocol error with an error; the connection is reset in
// every case but QUIT.
package redis

import (
	"bytes"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "redis"

// Ports are the ports the handler usually serves.
var Ports = []uint16{6379}

// Defaults of Config's zero values.
const (
	DefaultMaxCommands = 32
	DefaultMaxArgs     = 16
	DefaultMaxArgBytes = 512
	DefaultReadTimeout = 10 * time.Second
)

// Protocol caps that are not configurable: they bound what one command may
// make the handler read, whatever it keeps.
const (
	maxBulkBytes  = 64 << 10
	maxArrayLen   = 1024
	maxInlineSize = 4096 // also the bufio.Reader size: a longer line is an error
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// MaxCommands caps the commands answered and recorded per connection.
	MaxCommands int
	// MaxArgs caps the arguments recorded per command (the command name
	// included); the rest are read and dropped.
	MaxArgs int
	// MaxArgBytes caps each recorded argument.
	MaxArgBytes int
	// ReadTimeout is how long the handler waits for each command.
	ReadTimeout time.Duration
}

// Handler is the redis handler. It is safe for concurrent use.
type Handler struct {
	maxCommands, maxArgs, maxArgBytes int
	readTimeout                       time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns a redis Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{
		maxCommands: cfg.MaxCommands, maxArgs: cfg.MaxArgs,
		maxArgBytes: cfg.MaxArgBytes, readTimeout: cfg.ReadTimeout,
	}
	h.maxCommands = handlers.OrDefault(h.maxCommands, DefaultMaxCommands)
	h.maxArgs = handlers.OrDefault(h.maxArgs, DefaultMaxArgs)
	h.maxArgBytes = handlers.OrDefault(h.maxArgBytes, DefaultMaxArgBytes)
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: a RESP array header
// ("*" and a count) followed by a bulk string ("$"), which is how every
// Redis client sends a command. Inline commands are too much like other
// text protocols to claim off port.
func Match(first []byte) bool {
	if len(first) < 5 || first[0] != '*' {
		return false
	}
	i := 1
	for i < len(first) && i < 6 && first[i] >= '0' && first[i] <= '9' {
		i++
	}
	return i > 1 && bytes.HasPrefix(first[i:], []byte("\r\n$"))
}
