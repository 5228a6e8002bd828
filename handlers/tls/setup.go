// Package tls is spoki's TLS handler: it reads the client's ClientHello,
// records what it offers and its JA3 and JA4 fingerprints, answers with a
// handshake_failure alert and closes. It never sends a certificate.
//
// Ports: 443, 8443, 993, 995, 465, 636 (Ports), and any port whose first
// segment is a TLS handshake record (Match: 0x16 0x03), e.g. TLS to port 80.
//
// Session fields: app_proto "tls"; the "tls" object is Detail, named as
// Suricata's EVE tls object where it has the field: version (the highest
// version offered, "TLS 1.3"), sni, ja3 {hash, string} (salesforce/ja3:
// GREASE removed) and ja4 (FoxIO JA4: GREASE removed); spoki's own:
// record_version and hello_version (the record's and the ClientHello's
// legacy versions as numbers, 771 for 0x0303), versions
// (supported_versions), alpn, cipher_suites, extensions (wire order, GREASE
// values included, as numbers), groups, point_formats, sig_algs,
// session_id_len, ja4_r, ja4_o and ja4_ro, truncated (a list was cut at
// MaxListLen) and error (why the hello did not parse).
//
// Budgets: at most MaxHelloBytes (16 KiB + record headers) read, each read
// waiting at most ReadTimeout (2 s); lists are recorded up to MaxListLen
// (256) entries, ALPN up to 16 names of 64 bytes, the SNI up to 255 bytes;
// the fingerprints use the whole hello. The Mux's budgets apply on top.
package tls

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "tls"

// Ports are the ports the handler usually serves.
var Ports = []uint16{443, 465, 636, 993, 995, 8443}

// Defaults of Config's zero values.
const (
	DefaultReadTimeout = 2 * time.Second
	// MaxHelloBytes caps the handshake message: a ClientHello fits one
	// 16 KiB record.
	MaxHelloBytes = 16 << 10
	// MaxListLen caps each recorded list.
	MaxListLen = 256
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// ReadTimeout is how long each read of the hello may wait.
	ReadTimeout time.Duration
	// NoAlert closes without the handshake_failure alert.
	NoAlert bool
}

// Handler is the tls handler. It is safe for concurrent use.
type Handler struct {
	readTimeout time.Duration
	noAlert     bool
}

var _ handlers.Handler = (*Handler)(nil)

// New returns a tls Handler configured by cfg.
func New(cfg Config) *Handler {
	h := &Handler{readTimeout: cfg.ReadTimeout, noAlert: cfg.NoAlert}
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: a TLS handshake record
// (SSL 3.0 to TLS 1.3 record versions).
func Match(first []byte) bool {
	return len(first) >= 3 && first[0] == 0x16 && first[1] == 0x03 && first[2] <= 0x04
}
