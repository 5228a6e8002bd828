// Package http is spoki's HTTP/1.x handler: it reads one request, records
// what a scanner asked for, answers with a plausible page and closes.
//
// Ports: 80, 81, 8000, 8008, 8080, 8081, 8088, 8888 (Ports), and any port
// whose first segment starts with an HTTP method and a space (Match).
//
// Session fields: app_proto "http"; the "http" object is Request, named as
// Suricata's EVE http object: http_method, url (the request target as
// sent), protocol (HTTP/1.1), hostname and http_port (the Host header split
// at its port), http_user_agent, http_refer, request_headers (in order, as
// {name, value} objects); spoki's own: body (base64), body_len (body bytes
// received), content_length (declared, -1 if none), truncated (the head or
// body was cut at a cap) and error (why the request did not parse, if it
// did not). Each URL a downloader command in the request line (URL-decoded
// by the urls rules) or the body would fetch becomes a `downloader` event
// (handlers.Downloader, source "request_line" or "body").
//
// Budgets: the head is read up to MaxHeadBytes (8 KiB), at most MaxHeaders
// (64) headers of MaxValueBytes (1 KiB) each are kept, the body up to
// MaxBodyBytes (8 KiB); each read waits at most ReadTimeout (2 s). The
// answer is Body (a default-like index page) with the Server header
// (nginx). The Mux's idle, total and byte budgets apply on top.
package http

import (
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "http"

// Ports are the ports the handler usually serves; pass them (or the
// configuration's) to handlers.Matcher.
var Ports = []uint16{80, 81, 8000, 8008, 8080, 8081, 8088, 8888}

// Defaults of Config's zero values.
const (
	DefaultMaxHeadBytes  = 8 << 10
	DefaultMaxHeaders    = 64
	DefaultMaxValueBytes = 1 << 10
	DefaultMaxBodyBytes  = 8 << 10
	DefaultReadTimeout   = 2 * time.Second
	DefaultServer        = "nginx/1.18.0 (Ubuntu)"
	DefaultBody          = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n" +
		"<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\n" +
		"working. Further configuration is required.</p>\n</body>\n</html>\n"
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// Server is the Server header of the answer.
	Server string
	// Body is the answer's body (text/html), sent with status 200 to any
	// request that parsed, and with 400 otherwise.
	Body string
	// Limits caps what is parsed and recorded.
	Limits Limits
	// ReadTimeout is how long each read of the request may wait.
	ReadTimeout time.Duration
}

// Limits are the parser's caps.
type Limits struct {
	// MaxHeadBytes caps the request line and headers.
	MaxHeadBytes int
	// MaxHeaders caps the headers kept; MaxValueBytes each value's length.
	MaxHeaders, MaxValueBytes int
	// MaxBodyBytes caps the body kept.
	MaxBodyBytes int
}

func (l Limits) withDefaults() Limits {
	l.MaxHeadBytes = handlers.OrDefault(l.MaxHeadBytes, DefaultMaxHeadBytes)
	l.MaxHeaders = handlers.OrDefault(l.MaxHeaders, DefaultMaxHeaders)
	l.MaxValueBytes = handlers.OrDefault(l.MaxValueBytes, DefaultMaxValueBytes)
	l.MaxBodyBytes = handlers.OrDefault(l.MaxBodyBytes, DefaultMaxBodyBytes)
	return l
}

// Handler is the http handler. It is safe for concurrent use.
type Handler struct {
	server, body string
	lim          Limits
	readTimeout  time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns an http Handler configured by cfg.
func New(cfg Config) *Handler {
	h := &Handler{server: cfg.Server, body: cfg.Body, lim: cfg.Limits.withDefaults(), readTimeout: cfg.ReadTimeout}
	if h.server == "" {
		h.server = DefaultServer
	}
	if h.body == "" {
		h.body = DefaultBody
	}
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// methods are the request methods Match accepts, each followed by a space.
var methods = []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "PATCH ", "TRACE ", "PROPFIND "}

// Match is the handler's handlers.Matcher.Content: the first segment starts
// with an HTTP method and a space.
var Match = handlers.Prefix(methods...)
