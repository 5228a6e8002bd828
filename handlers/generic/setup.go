// Package generic is spoki's fallback handler and Spoki's own behaviour:
// it records what the client sends, answers nothing, and resets the
// connection.
//
// Ports: all. Register it as the Registry's fallback
// (handlers.NewRegistry(generic.New(generic.Config{}))): it serves every
// connection that no content matcher and no port claims.
//
// Session fields: app_proto "generic"; payload is the first segment (set by
// the Mux); bytes_toserver counts what was read; bytes_toclient is always 0.
// The "generic" object is Detail: {"bytes": N, "truncated": bool, "more":
// base64}, where bytes counts the recorded data (first segment included),
// truncated says the client sent more than MaxBytes within the window, and
// more (omitted when empty) holds the recorded data after the first segment.
//
// Budgets: at most MaxBytes (4 KiB) recorded, reading until the client is
// idle for ReadWindow (500 ms), closes, or the cap is reached; the Mux's idle
// and total budgets apply on top. A client that sent no first segment is
// reset at once.
package generic

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "generic"

// Defaults of Config's zero values.
const (
	DefaultMaxBytes   = 4096
	DefaultReadWindow = 500 * time.Millisecond
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// MaxBytes caps the client data recorded, first segment included.
	MaxBytes int
	// ReadWindow is how long the handler waits for more data after each
	// read before resetting the connection.
	ReadWindow time.Duration
}

// Handler is the generic handler. It is safe for concurrent use.
type Handler struct {
	maxBytes   int
	readWindow time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns a generic Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{maxBytes: cfg.MaxBytes, readWindow: cfg.ReadWindow}
	h.maxBytes = handlers.OrDefault(h.maxBytes, DefaultMaxBytes)
	h.readWindow = handlers.OrDefault(h.readWindow, DefaultReadWindow)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }
