package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/analysis/assemble"
	"github.com/spoki-telescope/spoki/config"
	"github.com/spoki-telescope/spoki/telescope"
)

// prefixList is a repeatable --prefix flag.
type prefixList []string

func (p *prefixList) String() string     { return strings.Join(*p, ",") }
func (p *prefixList) Set(s string) error { *p = append(*p, s); return nil }

// replaceList is a repeatable flag whose first use replaces the list it
// fills (the file's), as --prefix and --pure-prefix do.
type replaceList struct {
	dst *[]string
	set bool
}

func (r *replaceList) String() string {
	if r.dst == nil {
		return ""
	}
	return strings.Join(*r.dst, ",")
}

func (r *replaceList) Set(s string) error {
	if !r.set {
		*r.dst, r.set = nil, true
	}
	*r.dst = append(*r.dst, s)
	return nil
}

// runSynopsis heads the help of `spoki run`.
const runSynopsis = `usage: spoki run --prefix CIDR [--prefix CIDR ...] [flags]
       spoki run --config FILE [flags]

Runs the telescope: routes the prefixes to a TUN device, answers every SYN
to them with a SYN cookie, completes the handshakes that come back and
records what the clients send (README.md: the files it writes). SIGHUP
reloads --config; SIGINT and SIGTERM end it with a final stats line.`

// runFlags defines the flags of `spoki run` on c, each defaulting to c's
// current value: parsing the arguments onto a config read from a file
// changes only what a flag sets. The list flags collect into prefixes and
// purePrefixes, which replace (not extend) the file's lists.
func runFlags(c *runConfig, prefixes, purePrefixes *prefixList) *flag.FlagSet {
	fs := newFlagSet("run", runSynopsis)
	fs.Var(prefixes, "prefix", "telescope prefix `CIDR` (IPv4 or IPv6; repeat for more)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "YAML `FILE` with the same keys as the flags (flags win); SIGHUP reloads it")
	fs.StringVar(&c.Tun, "tun", c.Tun, "TUN device `NAME`")
	fs.IntVar(&c.Queues, "queues", c.Queues, "TUN queues (one reader goroutine each)")
	fs.BoolVar(&c.NoRoute, "no-route", c.NoRoute, "do not add routes for the prefixes (the operator routes)")
	fs.BoolVar(&c.TunReplies, "tun-replies", c.TunReplies, "write the front end's replies to the TUN, one write each, instead of sendmmsg batches on raw IP sockets")
	fs.StringVar(&c.LogDir, "log-dir", c.LogDir, "`DIR` for the packet, reply and event logs")
	fs.StringVar(&c.Tag, "tag", c.Tag, "datasource `TAG` in file names")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "connections open at once; handshakes over it are dropped")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "connections open at once from one remote address (>= --max-conns: no cap)")
	fs.IntVar(&c.MaxConnsPerNet, "max-conns-per-net", c.MaxConnsPerNet, "connections open at once from one remote /24 (IPv4) or /48 (IPv6) (>= --max-conns: no cap)")
	fs.IntVar(&c.MaxListeners, "max-listeners", c.MaxListeners, "gVisor listeners open at once (one per recently used port and family, about 4.5 KiB each)")
	fs.DurationVar(&c.FirstDataTimeout, "first-data-timeout", c.FirstDataTimeout, "wait this long for the client's first data")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "end a connection idle this long")
	fs.DurationVar(&c.TotalTimeout, "total-timeout", c.TotalTimeout, "end any connection after this long")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "end a connection whose first request is not complete this long after accept (slowloris)")
	fs.Var(&c.ConnBuffer, "conn-buffer", "receive and send buffer of each connection, each (`SIZE`, 8KiB-64KiB)")
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent, "Go's GOGC: heap growth between collections in `PERCENT` (10-1000; the GOGC environment variable wins if set)")
	fs.Var(&c.MemoryLimit, "memory-limit", "Go's soft memory limit (`SIZE`; the GOMEMLIMIT environment variable wins if set)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `LEVEL`: debug, info, warn or error")
	fs.DurationVar(&c.StatsInterval, "stats-interval", c.StatsInterval, "interval of the stats line of rates (0 = none; default 1s on a terminal, else 1m)")
	fs.BoolVar(&c.Progress, "progress", c.Progress, "on a terminal, show the stats as one line redrawn each --stats-interval, the log scrolling above it")
	fs.DurationVar(&c.PhaseTimeout, "phase-timeout", c.PhaseTimeout, "longest delay between the two phases of a two-phase scan")
	fs.Var(&c.PhaseMemory, "phase-memory", "memory `SIZE` of the two-phase detector's table (e.g. 32MiB; 32 bytes per phase-one SYN)")
	fs.IntVar(&c.SYNACKRate, "synack-rate", c.SYNACKRate, "SYN-ACKs per second per source for regular SYNs, after the burst (0 = no limit)")
	fs.IntVar(&c.SYNACKBurst, "synack-burst", c.SYNACKBurst, "SYN-ACKs a source's regular SYNs may get at once")
	fs.IntVar(&c.SYNACKIrregularRate, "synack-irregular-rate", c.SYNACKIrregularRate, "SYN-ACKs per second per source for irregular SYNs, after the burst (0 = no limit)")
	fs.IntVar(&c.SYNACKIrregularBurst, "synack-irregular-burst", c.SYNACKIrregularBurst, "SYN-ACKs a source's irregular SYNs may get at once")
	fs.Var(&c.SYNACKTable, "synack-table", "memory `SIZE` of the per-source SYN-ACK table (16 bytes a source; colliding sources share a budget)")
	fs.StringVar(&c.ICMP, "icmp", c.ICMP, "answer ICMP echo requests: echo, or off (recorded only)")
	fs.IntVar(&c.ICMPRate, "icmp-rate", c.ICMPRate, "echo replies per second per source, after the burst (0 = no limit)")
	fs.IntVar(&c.ICMPBurst, "icmp-burst", c.ICMPBurst, "echo replies a source may get at once")
	fs.StringVar(&c.UDP, "udp", c.UDP, "answer UDP probes of DNS, NTP, SSDP, SIP, memcached, NetBIOS and SNMP (never longer than the probe): reply, or off (recorded only)")
	fs.IntVar(&c.UDPRate, "udp-rate", c.UDPRate, "UDP answers per second per source, after the burst (0 = no limit)")
	fs.IntVar(&c.UDPBurst, "udp-burst", c.UDPBurst, "UDP answers a source may get at once")
	fs.Var(&c.ReplyTable, "reply-table", "memory `SIZE` of the per-source table of the ICMP and UDP limits (16 bytes a source)")
	fs.BoolVar(&c.Pure, "pure", c.Pure, "pure Spoki mode: record the first payload, then reset (no protocol handlers)")
	fs.Var(purePrefixes, "pure-prefix", "pure Spoki mode for this `CIDR` only (repeatable)")
	fs.StringVar(&c.Persona, "persona", c.Persona, "SYN-ACK persona `NAME` of every prefix: plain, linux, windows or embedded")
	fs.Var(&replaceList{dst: &c.PersonaPrefixes}, "persona-prefix", "persona for part of the prefixes, `CIDR=NAME` (repeatable; the most specific prefix wins)")
	fs.StringVar(&c.User, "user", c.User, "after set-up, run as user `NAME` (as root the default is spoki, else nobody; root keeps uid 0); no capability is kept either way")
	fs.DurationVar(&c.Keep, "keep", c.Keep, "remove log files older than `DURATION` (0 = keep all)")
	fs.BoolVar(&c.Compress, "compress", c.Compress, "gzip hourly files once their hour is closed")
	fs.DurationVar(&c.RecordWait, "record-wait", c.RecordWait, "longest a TUN reader waits after a read while the record writer is behind (its queues three quarters full), so that answered SYNs keep their rows (0 = never: the rows are dropped and counted)")
	fs.IntVar(&c.CompressWorkers, "compress-workers", c.CompressWorkers, "goroutines that deflate a closed file at once (1-64; one keeps up with about 230k SYN/s averaged over an hour)")
	fs.BoolVar(&c.SYNEvents, "syn-events", c.SYNEvents, "write a syn event per SYN to the event log (=false keeps only the CSV rows: about a third of the log bytes)")
	fs.StringVar(&c.HostName, "host-name", c.HostName, "sensor `NAME` written as host on every event (default: the tag)")
	fs.IntVar(&c.CommunityIDSeed, "community-id-seed", c.CommunityIDSeed, "`SEED` (0-65535) of the events' community_id; 0 matches Zeek's and Suricata's default")
	fs.BoolVar(&c.Alerts, "alerts", c.Alerts, "write an EVE alert event beside each two_phase and downloader event")
	fs.StringVar(&c.Kafka, "kafka", c.Kafka, "publish every event to these Kafka `BROKERS` (host:port,...)")
	fs.StringVar(&c.KafkaTopicPrefix, "kafka-topic-prefix", c.KafkaTopicPrefix, "prefix `P` of the Kafka topic names")
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", c.KafkaTLS, "connect to the Kafka brokers over TLS (implied by the other --kafka-tls-* flags)")
	fs.StringVar(&c.KafkaTLSCA, "kafka-tls-ca", c.KafkaTLSCA, "PEM `FILE` of the CAs of the Kafka brokers' certificates (default: the system's)")
	fs.StringVar(&c.KafkaTLSCert, "kafka-tls-cert", c.KafkaTLSCert, "PEM `FILE` of the client certificate for Kafka (with --kafka-tls-key)")
	fs.StringVar(&c.KafkaTLSKey, "kafka-tls-key", c.KafkaTLSKey, "PEM `FILE` of the client certificate's key")
	fs.StringVar(&c.KafkaTLSServerName, "kafka-tls-server-name", c.KafkaTLSServerName, "`NAME` the Kafka brokers' certificates must carry (default: each broker's host)")
	fs.BoolVar(&c.KafkaTLSInsecureSkipVerify, "kafka-tls-insecure-skip-verify", c.KafkaTLSInsecureSkipVerify, "accept any Kafka broker certificate (labs only)")
	fs.StringVar(&c.KafkaSASL, "kafka-sasl", c.KafkaSASL, "SASL `MECHANISM` for Kafka: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&c.KafkaSASLUser, "kafka-sasl-user", c.KafkaSASLUser, "SASL `USER` for Kafka")
	fs.StringVar(&c.KafkaSASLPasswordFile, "kafka-sasl-password-file", c.KafkaSASLPasswordFile, "`FILE` whose first line is the SASL password for Kafka")
	fs.StringVar(&c.Pprof, "pprof", c.Pprof, "serve Go's pprof on `ADDR` (loopback, e.g. 127.0.0.1:6060; debugging only)")
	fs.BoolVar(&c.PprofAny, "pprof-any", c.PprofAny, "let --pprof bind to an address that is not loopback")
	fs.StringVar(&c.Metrics, "metrics", c.Metrics, "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9108)")
	return fs
}

// parseRunFlags reads the flags and then the config file (if any): flags
// that are set win over the file. SIGHUP calls it again with the same
// arguments, so a reload sees the file as a restart would.
func parseRunFlags(args []string) (runConfig, error) {
	cfg := defaultRunConfig()
	var prefixes, purePrefixes prefixList
	fs := runFlags(&cfg, &prefixes, &purePrefixes)
	if err := parseArgs(fs, args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, usagef("run", "run: unexpected arguments %q", fs.Args())
	}
	if cfg.ConfigFile != "" {
		fileCfg := defaultRunConfig()
		if err := config.Load(cfg.ConfigFile, &fileCfg); err != nil {
			return cfg, err
		}
		// The same arguments again, onto the file's values: they parsed
		// above, so they parse here.
		prefixes, purePrefixes = nil, nil
		if err := parseArgs(runFlags(&fileCfg, &prefixes, &purePrefixes), args); err != nil {
			return cfg, err
		}
		cfg = fileCfg
	}
	if len(prefixes) > 0 {
		cfg.Prefixes = prefixes
	}
	if len(purePrefixes) > 0 {
		cfg.PurePrefixes = purePrefixes
	}
	return cfg, nil
}

// newLogger writes colour through tint on a terminal and plain slog text
// otherwise (files, pipes, journald). level is a *slog.LevelVar in
// runMain, so that SIGHUP can change it.
func newLogger(level slog.Leveler) *slog.Logger {
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err == nil {
		return slog.New(tint.NewHandler(os.Stderr, &tint.Options{Level: level, TimeFormat: time.TimeOnly}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// runMain is `spoki run`: the flags, then the telescope (package
// telescope).
func runMain(ctx context.Context, args []string) error {
	cfg, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	// A bad or missing flag value is the invocation's mistake (exit 2);
	// telescope.Run checks again (a reload's config goes through it too).
	if _, err := cfg.Validate(); err != nil {
		return &usageError{cmd: "run", err: err}
	}
	o := telescope.Options{
		Config:    cfg,
		Reparse:   func() (runConfig, error) { return parseRunFlags(args) },
		NewLogger: newLogger,
	}
	if width, ok := assemble.TerminalWidth(os.Stderr); ok && cfg.Progress {
		// The log scrolls above the progress line.
		status := assemble.NewStatusLine(os.Stderr, width)
		o.Status = status
		o.NewLogger = func(level slog.Leveler) *slog.Logger {
			return slog.New(tint.NewHandler(status, &tint.Options{Level: level, TimeFormat: time.TimeOnly}))
		}
	}
	return telescope.Run(ctx, o)
}
