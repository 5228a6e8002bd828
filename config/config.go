// Package config is the configuration of `spoki run`: its settings (Run),
// their defaults, the rules they obey (written once, in rules.go, for the
// flags and the YAML file alike), loading and checking a YAML file with the
// line of each problem, and planning what a reload applies.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/tun"
)

// Run holds every setting of `spoki run`. The YAML keys of --config
// are the flag names (cmd/spoki's TestConfigCoversFlags holds them in step); the
// config file alone also sets handlers.
type Run struct {
	Prefixes         []string      `yaml:"prefix"`
	Tun              string        `yaml:"tun"`
	Queues           int           `yaml:"queues"`
	NoRoute          bool          `yaml:"no-route"`
	TunReplies       bool          `yaml:"tun-replies"`
	LogDir           string        `yaml:"log-dir"`
	Tag              string        `yaml:"tag"`
	MaxConns         int           `yaml:"max-conns"`
	MaxConnsPerIP    int           `yaml:"max-conns-per-ip"`
	MaxConnsPerNet   int           `yaml:"max-conns-per-net"`
	MaxListeners     int           `yaml:"max-listeners"`
	FirstDataTimeout time.Duration `yaml:"first-data-timeout"`
	IdleTimeout      time.Duration `yaml:"idle-timeout"`
	TotalTimeout     time.Duration `yaml:"total-timeout"`
	RequestTimeout   time.Duration `yaml:"request-timeout"`
	ConnBuffer       Size          `yaml:"conn-buffer"`
	MemoryLimit      Size          `yaml:"memory-limit"`
	GCPercent        int           `yaml:"gc-percent"`
	LogLevel         string        `yaml:"log-level"`
	StatsInterval    time.Duration `yaml:"stats-interval"`
	Pprof            string        `yaml:"pprof"`
	// PprofAny lets --pprof bind to an address that is not loopback.
	PprofAny bool `yaml:"pprof-any"`
	// Metrics is the address of the Prometheus endpoint, /metrics; empty
	// serves none.
	Metrics string `yaml:"metrics"`
	// Kafka lists brokers (host:port,...) that every event is published
	// to, one topic per event type; the files stay the source of truth.
	Kafka            string `yaml:"kafka"`
	KafkaTopicPrefix string `yaml:"kafka-topic-prefix"`
	// KafkaTLS* connect to the brokers over TLS (on with kafka-tls or any
	// of the CA, certificate, server name or skip-verify keys); KafkaSASL*
	// authenticate (see KafkaAuth). The password is read from a file, so
	// that it shows neither in the process list nor in the config.
	KafkaTLS                   bool   `yaml:"kafka-tls"`
	KafkaTLSCA                 string `yaml:"kafka-tls-ca"`
	KafkaTLSCert               string `yaml:"kafka-tls-cert"`
	KafkaTLSKey                string `yaml:"kafka-tls-key"`
	KafkaTLSServerName         string `yaml:"kafka-tls-server-name"`
	KafkaTLSInsecureSkipVerify bool   `yaml:"kafka-tls-insecure-skip-verify"`
	KafkaSASL                  string `yaml:"kafka-sasl"`
	KafkaSASLUser              string `yaml:"kafka-sasl-user"`
	KafkaSASLPasswordFile      string `yaml:"kafka-sasl-password-file"`
	// User is who spoki runs as once the TUN and routes are up (root's
	// default: privs.DefaultUser, else privs.FallbackUser); whoever it is, it
	// keeps no capability.
	User string `yaml:"user"`
	// SYNEvents writes a `syn` event per SYN to the event log (about 450 of
	// the 650 log bytes a SYN costs; the CSV rows stay either way).
	SYNEvents bool `yaml:"syn-events"`
	// Keep removes log files older than that (0 keeps all); Compress
	// gzips hourly files once their hour is closed, with CompressWorkers
	// goroutines deflating each file.
	Keep            time.Duration `yaml:"keep"`
	Compress        bool          `yaml:"compress"`
	CompressWorkers int           `yaml:"compress-workers"`
	// RecordWait is the longest a TUN reader waits after a read while the
	// record writer is behind (netstack.Config.RecordWait); 0 never waits.
	RecordWait   time.Duration `yaml:"record-wait"`
	PhaseTimeout time.Duration `yaml:"phase-timeout"`
	// PhaseMemory is the fixed budget of the two-phase detector's table.
	PhaseMemory Size `yaml:"phase-memory"`
	// SYNACK* limit the SYN-ACKs per source (netstack.SYNACKLimits):
	// regular and irregular SYNs apart, rate 0 turns a class's limit off;
	// SYNACKTable is the memory of the table of sources.
	SYNACKRate           int  `yaml:"synack-rate"`
	SYNACKBurst          int  `yaml:"synack-burst"`
	SYNACKIrregularRate  int  `yaml:"synack-irregular-rate"`
	SYNACKIrregularBurst int  `yaml:"synack-irregular-burst"`
	SYNACKTable          Size `yaml:"synack-table"`
	// ICMP is off or echo (answer echo requests); UDP is off or reply
	// (answer the probes of the services of netstack/udpreply).
	// ICMPRate/Burst and UDPRate/Burst limit the answers per source
	// (netstack.ReplyLimits), in a table of ReplyTable bytes.
	ICMP       string `yaml:"icmp"`
	ICMPRate   int    `yaml:"icmp-rate"`
	ICMPBurst  int    `yaml:"icmp-burst"`
	UDP        string `yaml:"udp"`
	UDPRate    int    `yaml:"udp-rate"`
	UDPBurst   int    `yaml:"udp-burst"`
	ReplyTable Size   `yaml:"reply-table"`
	// Pure is Spoki's own behaviour everywhere: record the first payload,
	// then reset; PurePrefixes limits it to some prefixes.
	Pure         bool     `yaml:"pure"`
	PurePrefixes []string `yaml:"pure-prefix"`
	// Persona shapes the SYN-ACKs of every prefix (netstack.Personas:
	// plain, linux, windows, embedded); PersonaPrefixes ("CIDR=NAME")
	// give parts of the prefixes their own.
	Persona         string   `yaml:"persona"`
	PersonaPrefixes []string `yaml:"persona-prefix"`
	// HostName is the `host` field of every event, the sensor's name as
	// in Suricata's EVE ("" means the tag: EventHost).
	HostName string `yaml:"host-name"`
	// CommunityIDSeed seeds the events' community_id (0-65535; 0 as in
	// Zeek's and Suricata's defaults).
	CommunityIDSeed int `yaml:"community-id-seed"`
	// Alerts writes an `alert` event (EVE's alert form) beside each
	// two_phase (phase_two) and downloader event.
	Alerts bool `yaml:"alerts"`
	// Handlers moves, limits or disables protocol handlers (config file
	// only): name → {ports, prefixes, disabled}.
	Handlers map[string]Handler `yaml:"handlers"`
	// Progress shows the stats as one line redrawn in place on a terminal
	// (the log lines scroll above it) instead of a stats line per
	// interval; off a terminal it changes nothing.
	Progress bool `yaml:"progress"`

	// ConfigFile is --config, which SIGHUP reads again; it is no YAML key.
	ConfigFile string `yaml:"-"`
}

// EventHost is the `host` of every event: HostName, or the tag when it
// is empty.
func (c *Run) EventHost() string {
	if c.HostName != "" {
		return c.HostName
	}
	return c.Tag
}

// Default returns the defaults of every setting.
func Default() Run {
	return Run{
		Tun:              tun.DefaultName,
		Queues:           runtime.NumCPU(),
		LogDir:           "./logs",
		Tag:              "spoki",
		MaxConns:         netstack.DefaultMaxConns,
		MaxConnsPerIP:    netstack.DefaultMaxConnsPerIP,
		MaxConnsPerNet:   netstack.DefaultMaxConnsPerNet,
		MaxListeners:     netstack.DefaultMaxListeners,
		FirstDataTimeout: handlers.DefaultFirstDataTimeout,
		IdleTimeout:      netstack.DefaultIdleTimeout,
		TotalTimeout:     netstack.DefaultTotalTimeout,
		RequestTimeout:   handlers.DefaultRequestTimeout,
		ConnBuffer:       netstack.DefaultConnBuffer,
		MemoryLimit:      DefaultMemoryLimit,
		GCPercent:        DefaultGCPercent,
		LogLevel:         "info",
		StatsInterval:    time.Second,
		PhaseTimeout:     600 * time.Second,
		PhaseMemory:      twophase.DefaultMemory,
		Compress:         true,
		CompressWorkers:  filesink.DefaultCompressWorkers,
		RecordWait:       netstack.DefaultRecordWait,
		SYNEvents:        true,
		Persona:          netstack.PersonaPlain.Name,
		Alerts:           true,

		SYNACKRate:           netstack.DefaultSYNRegularRate,
		SYNACKBurst:          netstack.DefaultSYNRegularBurst,
		SYNACKIrregularRate:  netstack.DefaultSYNIrregularRate,
		SYNACKIrregularBurst: netstack.DefaultSYNIrregularBurst,
		SYNACKTable:          Size(netstack.DefaultSYNTableEntries * netstack.SYNLimitEntryBytes),

		ICMP:       "echo",
		ICMPRate:   netstack.DefaultICMPRate,
		ICMPBurst:  netstack.DefaultICMPBurst,
		UDP:        "reply",
		UDPRate:    netstack.DefaultUDPRate,
		UDPBurst:   netstack.DefaultUDPBurst,
		ReplyTable: Size(netstack.DefaultSYNTableEntries * netstack.SYNLimitEntryBytes),
	}
}

// Validate checks everything that can be checked before touching the
// system, so that a bad invocation leaves nothing behind, and returns the
// telescope prefixes. It applies the rules of the flags (rules.go) to the
// settings as they are after the flags and the file.
func (c *Run) Validate() ([]netip.Prefix, error) {
	out, err := telescopePrefixes(c.Prefixes)
	if err != nil {
		return nil, err
	}
	for i := range rules {
		r := &rules[i]
		if r.scope&onFlags == 0 {
			continue
		}
		if err := r.check(c); err != nil {
			return nil, r.flagError(c, err)
		}
	}
	if _, err := BuildRegistry(*c); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return out, nil
}

// SYNACKLimits is the netstack's view of the --synack-* flags.
func (c *Run) SYNACKLimits() netstack.SYNACKLimits {
	return netstack.SYNACKLimits{
		Regular:      netstack.SYNACKLimit{Rate: c.SYNACKRate, Burst: c.SYNACKBurst},
		Irregular:    netstack.SYNACKLimit{Rate: c.SYNACKIrregularRate, Burst: c.SYNACKIrregularBurst},
		TableEntries: int(min(int64(c.SYNACKTable)/netstack.SYNLimitEntryBytes, netstack.MaxSYNTableEntries+1)),
	}
}

// ReplyLimits is the netstack's view of the --icmp-*, --udp-* and
// --reply-table flags.
func (c *Run) ReplyLimits() netstack.ReplyLimits {
	return netstack.ReplyLimits{
		ICMP:         netstack.SYNACKLimit{Rate: c.ICMPRate, Burst: c.ICMPBurst},
		UDP:          netstack.SYNACKLimit{Rate: c.UDPRate, Burst: c.UDPBurst},
		TableEntries: int(min(int64(c.ReplyTable)/netstack.SYNLimitEntryBytes, netstack.MaxSYNTableEntries+1)),
	}
}

// ParseLevel reads a --log-level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("bad log level %q (debug, info, warn, error)", s)
	}
	return l, nil
}

// CheckPprofAddr refuses a --pprof address that is not loopback unless
// anyAddr is set: pprof shows the process's memory and its profiles can stall
// it, so it is for the operator on the host alone. addr passed
// CheckListenAddr; a name other than localhost is refused, and what
// localhost resolves to is checked once listening.
func CheckPprofAddr(addr string, anyAddr bool) error {
	if addr == "" || anyAddr {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // CheckListenAddr reports it
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address (pprof exposes the process's memory): bind to 127.0.0.1 or [::1], or add --pprof-any", addr)
}

// Memory limit: GOMEMLIMIT's default in spoki, and the least that makes
// sense (the queues and tables preallocated at start take tens of MiB).
const (
	DefaultMemoryLimit = 256 << 20
	MinMemoryLimit     = 32 << 20
)

// DefaultGCPercent is spoki's GOGC. Go's own 100 lets the heap grow to
// twice what is live before each collection; under an attack mix most of
// what is live is connection state that a flood of handshakes churns, so
// that headroom is memory attackers decide. 25 trades a collection four
// times as often (the packet path allocates nothing, so each is cheap) for
// nearly 40 % less heap at the peak. Measured against 50 (docs/benchmarks.md,
// "The attack mix"): the attack mix's anonymous peak 7-8 MiB lower,
// spoki's CPU over it 8-12 % higher (twice the collections), and SYN-ACKs
// per second in the flood benchmark the same (ratio 1.02 and 1.00).
const DefaultGCPercent = 25

// sizeOf is n as a Size, for messages.
func sizeOf(n int64) *Size { b := Size(n); return &b }

// MaxPhaseMemory caps --phase-memory: the table is allocated at start, so
// a typo must not ask for the machine's memory.
const MaxPhaseMemory = 16 << 30

// CheckPhaseMemory is the range of --phase-memory (a rule of rules.go).
func CheckPhaseMemory(m Size) error {
	if m < twophase.MinMemory || m > MaxPhaseMemory {
		lo, hi := Size(twophase.MinMemory), Size(MaxPhaseMemory)
		return fmt.Errorf("%s out of range %s-%s", m.String(), lo.String(), hi.String())
	}
	return nil
}
