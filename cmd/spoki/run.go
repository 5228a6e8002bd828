package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/tun"
)

// runConfig holds every setting of `spoki run`. The YAML keys of --config
// are the flag names.
type runConfig struct {
	Prefixes         []string      `yaml:"prefix"`
	Tun              string        `yaml:"tun"`
	Queues           int           `yaml:"queues"`
	NoRoute          bool          `yaml:"no-route"`
	LogDir           string        `yaml:"log-dir"`
	Tag              string        `yaml:"tag"`
	MaxConns         int           `yaml:"max-conns"`
	FirstDataTimeout time.Duration `yaml:"first-data-timeout"`
	IdleTimeout      time.Duration `yaml:"idle-timeout"`
	TotalTimeout     time.Duration `yaml:"total-timeout"`
	LogLevel         string        `yaml:"log-level"`
	StatsInterval    time.Duration `yaml:"stats-interval"`
	Pprof            string        `yaml:"pprof"`
	PhaseTimeout     time.Duration `yaml:"phase-timeout"`
	// Pure is Spoki's own behaviour everywhere: record the first payload,
	// then reset; PurePrefixes limits it to some prefixes.
	Pure         bool     `yaml:"pure"`
	PurePrefixes []string `yaml:"pure-prefix"`
	// Handlers moves, limits or disables protocol handlers (config file
	// only): name → {ports, prefixes, disabled}.
	Handlers map[string]handlerConfig `yaml:"handlers"`
}

// prefixList is a repeatable --prefix flag.
type prefixList []string

func (p *prefixList) String() string     { return strings.Join(*p, ",") }
func (p *prefixList) Set(s string) error { *p = append(*p, s); return nil }

func defaultRunConfig() runConfig {
	return runConfig{
		Tun:              tun.DefaultName,
		Queues:           runtime.NumCPU(),
		LogDir:           "./logs",
		Tag:              "spoki",
		MaxConns:         netstack.DefaultMaxConns,
		FirstDataTimeout: handlers.DefaultFirstDataTimeout,
		IdleTimeout:      netstack.DefaultIdleTimeout,
		TotalTimeout:     netstack.DefaultTotalTimeout,
		LogLevel:         "info",
		StatsInterval:    time.Second,
		PhaseTimeout:     600 * time.Second,
	}
}

// parseRunFlags reads the config file (if any) and then the flags: flags
// that are set win over the file.
func parseRunFlags(args []string) (runConfig, error) {
	cfg := defaultRunConfig()
	fs := flag.NewFlagSet("spoki run", flag.ContinueOnError)
	var prefixes prefixList
	fs.Var(&prefixes, "prefix", "telescope prefix `CIDR` (IPv4 or IPv6; repeat for more)")
	var configFile string
	fs.StringVar(&configFile, "config", "", "YAML `FILE` with the same keys as the flags (flags win)")
	fs.StringVar(&cfg.Tun, "tun", cfg.Tun, "TUN device `NAME`")
	fs.IntVar(&cfg.Queues, "queues", cfg.Queues, "TUN queues (one reader goroutine each)")
	fs.BoolVar(&cfg.NoRoute, "no-route", false, "do not add routes for the prefixes (the operator routes)")
	fs.StringVar(&cfg.LogDir, "log-dir", cfg.LogDir, "`DIR` for the packet, reply and event logs")
	fs.StringVar(&cfg.Tag, "tag", cfg.Tag, "datasource `TAG` in file names")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "connections open at once; handshakes over it are dropped")
	fs.DurationVar(&cfg.FirstDataTimeout, "first-data-timeout", cfg.FirstDataTimeout, "wait this long for the client's first data")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "end a connection idle this long")
	fs.DurationVar(&cfg.TotalTimeout, "total-timeout", cfg.TotalTimeout, "end any connection after this long")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&cfg.StatsInterval, "stats-interval", cfg.StatsInterval, "interval of the stats line (0 = none)")
	fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", cfg.PhaseTimeout, "longest delay between the two phases of a two-phase scan")
	fs.BoolVar(&cfg.Pure, "pure", false, "pure Spoki mode: record the first payload, then reset (no protocol handlers)")
	var purePrefixes prefixList
	fs.Var(&purePrefixes, "pure-prefix", "pure Spoki mode for this `CIDR` only (repeatable)")
	fs.StringVar(&cfg.Pprof, "pprof", "", "serve Go's pprof on `ADDR` (e.g. 127.0.0.1:6060; debugging only)")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	if configFile != "" {
		fileCfg := defaultRunConfig()
		if err := loadYAML(configFile, &fileCfg); err != nil {
			return cfg, err
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		merged := fileCfg
		fs.VisitAll(func(f *flag.Flag) {
			if !set[f.Name] {
				return
			}
			switch f.Name {
			case "tun":
				merged.Tun = cfg.Tun
			case "queues":
				merged.Queues = cfg.Queues
			case "no-route":
				merged.NoRoute = cfg.NoRoute
			case "log-dir":
				merged.LogDir = cfg.LogDir
			case "tag":
				merged.Tag = cfg.Tag
			case "max-conns":
				merged.MaxConns = cfg.MaxConns
			case "first-data-timeout":
				merged.FirstDataTimeout = cfg.FirstDataTimeout
			case "idle-timeout":
				merged.IdleTimeout = cfg.IdleTimeout
			case "total-timeout":
				merged.TotalTimeout = cfg.TotalTimeout
			case "log-level":
				merged.LogLevel = cfg.LogLevel
			case "stats-interval":
				merged.StatsInterval = cfg.StatsInterval
			case "pprof":
				merged.Pprof = cfg.Pprof
			case "pure":
				merged.Pure = cfg.Pure
			case "phase-timeout":
				merged.PhaseTimeout = cfg.PhaseTimeout
			}
		})
		cfg = merged
	}
	if len(prefixes) > 0 {
		cfg.Prefixes = prefixes
	}
	if len(purePrefixes) > 0 {
		cfg.PurePrefixes = purePrefixes
	}
	return cfg, nil
}

// parseFlags parses args so that a bad flag costs one line on stderr (the
// caller prints the error) and -h prints the usage on stdout.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fmt.Fprintf(os.Stdout, "usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: %w (-h for help)", fs.Name(), err)
	}
	return nil
}

// loadYAML decodes a config file strictly: an unknown key is an error that
// names its line.
func loadYAML(path string, into *runConfig) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil && !errors.Is(err, os.ErrClosed) && err.Error() != "EOF" {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// validate checks everything that can be checked before touching the
// system, so that a bad invocation leaves nothing behind.
func (c *runConfig) validate() ([]netip.Prefix, error) {
	if len(c.Prefixes) == 0 {
		return nil, errors.New("run: at least one --prefix is required")
	}
	var out []netip.Prefix
	for _, s := range c.Prefixes {
		p, err := tun.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		for _, q := range out {
			if q.Overlaps(p) {
				return nil, fmt.Errorf("run: prefixes %s and %s overlap", q, p)
			}
		}
		out = append(out, p)
	}
	if c.Queues < 1 || c.Queues > 64 {
		return nil, fmt.Errorf("run: --queues %d out of range 1-64", c.Queues)
	}
	if c.MaxConns < 1 {
		return nil, fmt.Errorf("run: --max-conns %d must be positive", c.MaxConns)
	}
	if c.Tag == "" || strings.ContainsAny(c.Tag, "/.") {
		return nil, fmt.Errorf("run: --tag %q must be non-empty without '/' or '.'", c.Tag)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if _, err := buildRegistry(*c); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("bad log level %q (debug, info, warn, error)", s)
	}
	return l, nil
}

// newLogger writes colour through tint on a terminal and plain slog text
// otherwise (files, pipes, journald).
func newLogger(level slog.Level) *slog.Logger {
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err == nil {
		return slog.New(tint.NewHandler(os.Stderr, &tint.Options{Level: level, TimeFormat: time.TimeOnly}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// sinkAdapter gives the netstack its by-value Sink on top of the file
// writer, and passes SYNs on to the live two-phase detector.
type sinkAdapter struct {
	w  *filesink.Writer
	tp *twoPhaseFeed
}

func (a sinkAdapter) Packet(p records.Packet) {
	a.w.Packet(&p)
	if p.IsSYN() {
		a.tp.SYN(&p)
	}
}
func (a sinkAdapter) Reply(r records.Reply) { a.w.Reply(&r) }

// runMain is `spoki run`.
func runMain(ctx context.Context, args []string) (err error) {
	cfg, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	prefixes, err := cfg.validate()
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := newLogger(level)

	dev, err := tun.Open(tun.Config{Name: cfg.Tun, Queues: cfg.Queues, Prefixes: prefixes, NoRoute: cfg.NoRoute})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("run: %w (spoki needs CAP_NET_ADMIN: run it as root)", err)
		}
		return fmt.Errorf("run: %w", err)
	}
	defer func() {
		if cerr := dev.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("run: %w", cerr)
		}
	}()
	// Files close before the TUN and routes go (defers run in reverse).
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("run: log dir: %w", err)
	}
	sink, err := filesink.New(filesink.Config{Dir: cfg.LogDir, Tag: cfg.Tag, Logger: log.With("component", "filesink")})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer func() {
		if cerr := sink.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("run: close logs: %w", cerr)
		}
	}()

	tp := newTwoPhaseFeed(cfg.PhaseTimeout, cfg.FirstDataTimeout+cfg.TotalTimeout+10*time.Second, sink.Event, log.With("component", "twophase"))
	tpCtx, tpStop := context.WithCancel(context.Background())
	tpDone := make(chan struct{})
	go func() { defer close(tpDone); tp.run(tpCtx) }()
	// Runs after the stack stopped (deferred later) and before the files
	// close (deferred earlier): the detector's last events are written.
	defer func() { tpStop(); <-tpDone }()

	reg, err := buildRegistry(cfg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	mux, err := handlers.NewMux(handlers.MuxConfig{
		Registry: reg,
		Emit: func(se *records.Session) {
			sink.Session(se)
			tp.Session(se)
		},
		EmitEvent:        sink.Event,
		Logger:           log.With("component", "handlers"),
		FirstDataTimeout: cfg.FirstDataTimeout,
		IdleTimeout:      cfg.IdleTimeout,
		TotalTimeout:     cfg.TotalTimeout,
	})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	st, err := netstack.New(netstack.Config{
		FDs:          dev.FDs(),
		MTU:          uint32(dev.MTU()),
		Prefixes:     prefixes,
		MaxConns:     cfg.MaxConns,
		IdleTimeout:  cfg.IdleTimeout,
		TotalTimeout: cfg.TotalTimeout,
		Handle:       mux.ServeConn,
		Sink:         sinkAdapter{sink, tp},
		Logger:       log.With("component", "netstack"),
	})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	// Stop the stack before the device and the files (deferred above, run
	// after this): no packet is read once files start closing.
	defer st.Close()

	if cfg.Pprof != "" {
		ln, err := net.Listen("tcp", cfg.Pprof)
		if err != nil {
			return fmt.Errorf("run: pprof: %w", err)
		}
		defer ln.Close()
		go http.Serve(ln, nil)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Start from a collected heap, so that heap_live in the stats lines
	// measures growth from here (the queues were just allocated).
	debug.FreeOSMemory()
	log.Info("ready", "tun", dev.Name(), "queues", len(dev.FDs()), "prefixes", cfg.Prefixes, "log_dir", cfg.LogDir, "tag", cfg.Tag)

	var tick <-chan time.Time
	if cfg.StatsInterval > 0 {
		t := time.NewTicker(cfg.StatsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			st.Close()
			logStats(log, st, mux, sink, tp, dev, "final")
			return nil
		case <-tick:
			logStats(log, st, mux, sink, tp, dev, "stats")
		}
	}
}

// memStats returns the live heap at the last GC and the resident set size,
// in bytes: the two figures that show whether memory stays flat.
func memStats() (heapLive, rss uint64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		heapLive = sample[0].Value.Uint64()
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, res uint64
		if _, err := fmt.Sscan(string(b), &size, &res); err == nil {
			rss = res * uint64(os.Getpagesize())
		}
	}
	return heapLive, rss
}

// logStats writes the stats line: what came in, what went out, what was
// dropped, and whether the writers keep up.
func logStats(log *slog.Logger, st *netstack.Stack, mux *handlers.Mux, sink *filesink.Writer, tp *twoPhaseFeed, dev *tun.Device, msg string) {
	s := st.Stats().Snapshot()
	m := mux.Stats().Snapshot()
	w := sink.Stats()
	attrs := []slog.Attr{
		slog.Uint64("packets_in", s.PacketsIn),
		slog.Uint64("synacks_out", s.SYNACKsSent),
		slog.Uint64("handshakes", s.Handshakes),
		slog.Uint64("payloads", s.Payloads),
		slog.Uint64("sessions", m.Sessions),
		slog.Uint64("events", m.Events),
		slog.Uint64("events_dropped", m.EventsDropped),
		slog.Int64("active", s.Active),
		slog.Uint64("drops", s.Drops()),
		slog.Uint64("drop_bad_cookie", s.DropBadCookie),
		slog.Uint64("drop_backscatter", s.DropSYNACK+s.DropRST),
		slog.Uint64("drop_outside", s.DropOutside),
		slog.Uint64("drop_conn_limit", s.DropConnLimit),
		slog.Uint64("drop_non_tcp", s.DropUDP+s.DropICMP+s.DropOtherProto),
		slog.Uint64("records_dropped", w.DropPacketQueueFull+w.DropReplyQueueFull+w.DropEventQueueFull+w.DropClosed+w.DropWriteError),
		slog.Int("queue_packets", w.PacketQueue),
		slog.Uint64("bytes_written", w.BytesWritten),
	}
	if _, _, txDropped, err := dev.Stats(); err == nil {
		attrs = append(attrs, slog.Uint64("tun_dropped", txDropped))
	}
	attrs = append(attrs, slog.Uint64("two_phase", tp.events.Load()), slog.Uint64("two_phase_dropped", tp.dropped.Load()))
	heap, rss := memStats()
	attrs = append(attrs, slog.Uint64("heap_live", heap), slog.Uint64("rss", rss))
	log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}
