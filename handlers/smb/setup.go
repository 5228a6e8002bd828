// Package smb engages SMB scanners (TCP 445: EternalBlue and WannaCry
// scans, worms, share enumerators): it reads the client's NEGOTIATE, SMB1
// (dialect strings) or SMB2 (dialect list, client GUID), answers with a
// minimal NEGOTIATE response, and closes once the client has read it.
//
// The answer selects, for an SMB2 NEGOTIATE, the highest of the dialects
// 2.0.2 to 3.0.2 the client offers (3.1.1 needs negotiate contexts spoki
// does not build); for an SMB1 NEGOTIATE that offers SMB2 ("SMB 2.???" or
// "SMB 2.002"), the SMB2 response that points the client to SMB2 (dialect
// 0x02FF or 0x0202), as Windows does; otherwise the SMB1 "NT LM 0.12"
// response with extended security, or "no dialect" (index 0xFFFF). Every
// answer offers NTLMSSP through SPNEGO.
//
// Ports: 445 and 139 (Ports). Content: an SMB1 or SMB2 message in a
// NetBIOS session frame, from any port (Match).
//
// Session fields: app_proto "smb"; the "smb" object is Detail:
// {"version": 1 or 2, "dialects": ["NT LM 0.12", "SMB 2.???"] or ["2.0.2",
// "3.1.1"], "client_guid": "fd8956ab-3728-41ac-a0df-a46df2503647",
// "selected": "3.0.2"}: the NEGOTIATE's SMB version, its dialects (SMB1
// names, or SMB2 revisions), the SMB2 client GUID (omitted for SMB1), and
// the dialect answered (omitted if none).
//
// Budgets: a frame may be at most MaxFrameBytes (4 KiB; a NEGOTIATE is a
// few hundred bytes); at most 64 dialects are recorded, each cut to 64
// bytes. The handler waits ReadTimeout (10 s) for the NEGOTIATE and, after
// answering, up to a second for the client's next message or hang-up,
// then resets. The Mux's idle, total and byte budgets apply on top.
package smb

import (
	"crypto/rand"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "smb"

// Ports are the ports the handler usually serves: direct hosting, and
// NetBIOS sessions, whose session request it accepts.
var Ports = []uint16{445, 139}

// Defaults of Config's zero values.
const (
	DefaultMaxFrameBytes = 4096
	DefaultReadTimeout   = 10 * time.Second
)

// Caps on what a NEGOTIATE records.
const (
	maxDialects     = 64
	maxDialectBytes = 64
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// MaxFrameBytes caps one NetBIOS session frame.
	MaxFrameBytes int
	// ReadTimeout is how long the handler waits for the NEGOTIATE.
	ReadTimeout time.Duration
}

// Handler is the smb handler. It is safe for concurrent use.
type Handler struct {
	maxFrameBytes int
	readTimeout   time.Duration
	// serverGUID is drawn at New, so that telescopes do not share one
	// fingerprint, and kept, as a server's is.
	serverGUID [16]byte
	started    time.Time
}

var _ handlers.Handler = (*Handler)(nil)

// New returns an smb Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{maxFrameBytes: cfg.MaxFrameBytes, readTimeout: cfg.ReadTimeout, started: time.Now()}
	h.maxFrameBytes = handlers.OrDefault(h.maxFrameBytes, DefaultMaxFrameBytes)
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	_, _ = rand.Read(h.serverGUID[:]) // never fails (crypto/rand's documented contract)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher Content function: it accepts a
// NetBIOS session message (type 0) that carries an SMB1 (\xFFSMB) or SMB2
// (\xFESMB) header. handlers.Prefix cannot say this, as the frame length
// comes first.
func Match(first []byte) bool {
	if len(first) < 8 || first[0] != 0 {
		return false
	}
	p := string(first[4:8])
	return p == "\xffSMB" || p == "\xfeSMB"
}
