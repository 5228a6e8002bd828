// Package ssh is spoki's SSH handler: it sends a server identification
// banner and an SSH_MSG_KEXINIT like OpenSSH's, reads the client's banner
// and KEXINIT, records the client's algorithm lists and HASSH fingerprint,
// and closes before any key exchange. It speaks first.
//
// Ports: 22, 2222 (Ports). Register them with Matcher.SpeakFirst set to
// SpeakFirst (1 s): most clients wait for the server's banner, though
// RFC 4253 lets both sides send at once. Content: Match accepts a first segment starting
// with "SSH-".
//
// Session fields: app_proto "ssh"; the "ssh" object is Detail, shaped as
// Suricata's EVE ssh object: client {proto_version, software_version,
// hassh {hash, string} (MD5 of kex;enc_c2s;mac_c2s;cmp_c2s, per
// salesforce/hassh), and spoki's own banner (the identification line,
// without CR LF), kex, host_key, enc_c2s, enc_s2c, mac_c2s, mac_s2c,
// cmp_c2s, cmp_s2c (the KEXINIT name-lists, comma-separated as sent) and
// first_kex_follows}, server {proto_version, software_version} (spoki's
// banner), truncated and error.
//
// Budgets: the identification line is read up to 255 bytes (RFC 4253
// §4.2), after at most 16 other lines; the KEXINIT packet up to
// MaxPacketBytes (32 KiB); each name-list is recorded up to MaxListBytes
// (2 KiB), HASSH using the whole list; each read waits at most ReadTimeout
// (5 s). The Mux's budgets apply on top.
package ssh

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "ssh"

// Ports are the ports the handler usually serves.
var Ports = []uint16{22, 2222}

// SpeakFirst is how long the Mux waits on Ports for the client's first
// segment (Matcher.SpeakFirst) before the handler sends its banner: most
// clients wait for the server's, which Spoki's own (silent) default would
// never send.
const SpeakFirst = time.Second

// Defaults of Config's zero values, and caps.
const (
	DefaultBanner      = "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"
	DefaultReadTimeout = 5 * time.Second
	// MaxPacketBytes caps the client's KEXINIT packet.
	MaxPacketBytes = 32 << 10
	// MaxListBytes caps each recorded name-list.
	MaxListBytes = 2 << 10
	// maxIdentBytes is RFC 4253's limit on the identification line,
	// CR LF included.
	maxIdentBytes = 255
	// maxPreLines caps the lines a client may send before its
	// identification.
	maxPreLines = 16
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// Banner is the server identification, without CR LF.
	Banner string
	// ReadTimeout is how long each read may wait.
	ReadTimeout time.Duration
	// NoKEXINIT sends only the banner, not the server's KEXINIT.
	NoKEXINIT bool
}

// Handler is the ssh handler. It is safe for concurrent use.
type Handler struct {
	banner      string
	readTimeout time.Duration
	kexinit     []byte // the server KEXINIT packet, built once
}

var _ handlers.Handler = (*Handler)(nil)

// New returns an ssh Handler configured by cfg.
func New(cfg Config) *Handler {
	h := &Handler{banner: cfg.Banner, readTimeout: cfg.ReadTimeout}
	if h.banner == "" {
		h.banner = DefaultBanner
	}
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	if !cfg.NoKEXINIT {
		h.kexinit = serverKEXINIT()
	}
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content.
var Match = handlers.Prefix("SSH-")
