// Package telnet is spoki's telnet handler: it negotiates options, asks
// for a login and a password, then plays a minimal BusyBox shell that
// answers the probes of IoT bots (Mirai and kin), recording every
// credential and command. It speaks first.
//
// Ports: 23, 2323 (Ports). Register them with Matcher.SpeakFirst set to
// SpeakFirst (1 s): telnet clients wait for the server. Content: Match accepts a first
// segment starting with IAC (0xff) followed by a negotiation verb.
//
// Session fields: app_proto "telnet"; the "telnet" object is Detail:
// options (the client's negotiation, e.g. "WILL NAWS", "DO ECHO", in
// order), window ([width, height] from NAWS), term (TTYPE), credentials
// ([{"username","password"}], in order), logged_in, commands (each shell
// line as typed), truncated (a cap cut a list or a line) and error. Each
// URL a wget, curl, tftp or ftpget command fetches becomes a `downloader`
// event (handlers.Downloader, source "command"); nothing is fetched.
//
// Budgets: MaxCredentials (10) attempts and MaxCommands (64) lines
// recorded, each line cut at MaxLineBytes (1 KiB); MaxOptions (32)
// negotiations; each read waits at most ReadTimeout (10 s); the exchange
// ends at MaxInputBytes (64 KiB) of input, `exit`, or the Mux's budgets.
package telnet

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "telnet"

// Ports are the ports the handler usually serves.
var Ports = []uint16{23, 2323}

// SpeakFirst is how long the Mux waits on Ports for the client's first
// segment (Matcher.SpeakFirst) before the handler opens the negotiation:
// telnet clients wait for the server.
const SpeakFirst = time.Second

// Defaults of Config's zero values.
const (
	DefaultReadTimeout    = 10 * time.Second
	DefaultMaxCredentials = 10
	DefaultMaxCommands    = 64
	DefaultMaxLineBytes   = 1 << 10
	DefaultMaxOptions     = 32
	DefaultMaxInputBytes  = 64 << 10
	DefaultLoginAttempt   = 1
	DefaultHostname       = "localhost"
	DefaultBanner         = "\r\n\r\nBusyBox v1.22.1 (2017-02-15 13:45:22 CST) built-in shell (ash)\r\n" +
		"Enter 'help' for a list of built-in commands.\r\n\r\n"
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// LoginAttempt is the login attempt that succeeds (1: the first);
	// earlier ones get "Login incorrect".
	LoginAttempt int
	// Hostname is shown in the login prompt ("HOSTNAME login: ").
	Hostname string
	// Banner is written after a successful login.
	Banner string
	// ReadTimeout is how long each read may wait.
	ReadTimeout time.Duration
	// Limits caps what is recorded.
	Limits Limits
}

// Limits are the caps on what a session records.
type Limits struct {
	MaxCredentials, MaxCommands, MaxLineBytes, MaxOptions, MaxInputBytes int
}

func (l Limits) withDefaults() Limits {
	l.MaxCredentials = handlers.OrDefault(l.MaxCredentials, DefaultMaxCredentials)
	l.MaxCommands = handlers.OrDefault(l.MaxCommands, DefaultMaxCommands)
	l.MaxLineBytes = handlers.OrDefault(l.MaxLineBytes, DefaultMaxLineBytes)
	l.MaxOptions = handlers.OrDefault(l.MaxOptions, DefaultMaxOptions)
	l.MaxInputBytes = handlers.OrDefault(l.MaxInputBytes, DefaultMaxInputBytes)
	return l
}

// Handler is the telnet handler. It is safe for concurrent use.
type Handler struct {
	loginAttempt     int
	hostname, banner string
	readTimeout      time.Duration
	lim              Limits
}

var _ handlers.Handler = (*Handler)(nil)

// New returns a telnet Handler configured by cfg.
func New(cfg Config) *Handler {
	h := &Handler{loginAttempt: cfg.LoginAttempt, hostname: cfg.Hostname, banner: cfg.Banner,
		readTimeout: cfg.ReadTimeout, lim: cfg.Limits.withDefaults()}
	h.loginAttempt = handlers.OrDefault(h.loginAttempt, DefaultLoginAttempt)
	if h.hostname == "" {
		h.hostname = DefaultHostname
	}
	if h.banner == "" {
		h.banner = DefaultBanner
	}
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: the client opens with a
// telnet negotiation (IAC WILL/WONT/DO/DONT/SB).
func Match(first []byte) bool {
	return len(first) >= 2 && first[0] == iac && first[1] >= sb && first[1] <= dont
}
