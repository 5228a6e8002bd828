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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/privs"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
	"github.com/spoki-telescope/spoki/tun"
)

// runConfig holds every setting of `spoki run`. The YAML keys of --config
// are the flag names (TestConfigCoversFlags holds them in step); the
// config file alone also sets handlers.
type runConfig struct {
	Prefixes         []string      `yaml:"prefix"`
	Tun              string        `yaml:"tun"`
	Queues           int           `yaml:"queues"`
	NoRoute          bool          `yaml:"no-route"`
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
	ConnBuffer       byteSize      `yaml:"conn-buffer"`
	MemoryLimit      byteSize      `yaml:"memory-limit"`
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
	// User is who spoki runs as once the TUN and routes are up (root's
	// default: privs.DefaultUser, else privs.FallbackUser); whoever it is, it
	// keeps no capability.
	User string `yaml:"user"`
	// Keep removes log files older than that (0 keeps all); Compress
	// gzips hourly files once their hour is closed.
	Keep         time.Duration `yaml:"keep"`
	Compress     bool          `yaml:"compress"`
	PhaseTimeout time.Duration `yaml:"phase-timeout"`
	// PhaseMemory is the fixed budget of the two-phase detector's table.
	PhaseMemory byteSize `yaml:"phase-memory"`
	// SYNACK* limit the SYN-ACKs per source (netstack.SYNACKLimits):
	// regular and irregular SYNs apart, rate 0 turns a class's limit off;
	// SYNACKTable is the memory of the table of sources.
	SYNACKRate           int      `yaml:"synack-rate"`
	SYNACKBurst          int      `yaml:"synack-burst"`
	SYNACKIrregularRate  int      `yaml:"synack-irregular-rate"`
	SYNACKIrregularBurst int      `yaml:"synack-irregular-burst"`
	SYNACKTable          byteSize `yaml:"synack-table"`
	// Pure is Spoki's own behaviour everywhere: record the first payload,
	// then reset; PurePrefixes limits it to some prefixes.
	Pure         bool     `yaml:"pure"`
	PurePrefixes []string `yaml:"pure-prefix"`
	// Handlers moves, limits or disables protocol handlers (config file
	// only): name → {ports, prefixes, disabled}.
	Handlers map[string]handlerConfig `yaml:"handlers"`

	// ConfigFile is --config, which SIGHUP reads again; it is no YAML key.
	ConfigFile string `yaml:"-"`
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
		MaxConnsPerIP:    netstack.DefaultMaxConnsPerIP,
		MaxConnsPerNet:   netstack.DefaultMaxConnsPerNet,
		MaxListeners:     netstack.DefaultMaxListeners,
		FirstDataTimeout: handlers.DefaultFirstDataTimeout,
		IdleTimeout:      netstack.DefaultIdleTimeout,
		TotalTimeout:     netstack.DefaultTotalTimeout,
		RequestTimeout:   handlers.DefaultRequestTimeout,
		ConnBuffer:       netstack.DefaultConnBuffer,
		MemoryLimit:      defaultMemoryLimit,
		LogLevel:         "info",
		StatsInterval:    time.Second,
		PhaseTimeout:     600 * time.Second,
		PhaseMemory:      twophase.DefaultMemory,
		Compress:         true,

		SYNACKRate:           netstack.DefaultSYNRegularRate,
		SYNACKBurst:          netstack.DefaultSYNRegularBurst,
		SYNACKIrregularRate:  netstack.DefaultSYNIrregularRate,
		SYNACKIrregularBurst: netstack.DefaultSYNIrregularBurst,
		SYNACKTable:          byteSize(netstack.DefaultSYNTableEntries * netstack.SYNLimitEntryBytes),
	}
}

// runFlags defines the flags of `spoki run` on c, each defaulting to c's
// current value: parsing the arguments onto a config read from a file
// changes only what a flag sets. The list flags collect into prefixes and
// purePrefixes, which replace (not extend) the file's lists.
func runFlags(c *runConfig, prefixes, purePrefixes *prefixList) *flag.FlagSet {
	fs := flag.NewFlagSet("spoki run", flag.ContinueOnError)
	fs.Var(prefixes, "prefix", "telescope prefix `CIDR` (IPv4 or IPv6; repeat for more)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "YAML `FILE` with the same keys as the flags (flags win); SIGHUP reloads it")
	fs.StringVar(&c.Tun, "tun", c.Tun, "TUN device `NAME`")
	fs.IntVar(&c.Queues, "queues", c.Queues, "TUN queues (one reader goroutine each)")
	fs.BoolVar(&c.NoRoute, "no-route", c.NoRoute, "do not add routes for the prefixes (the operator routes)")
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
	fs.Var(&c.ConnBuffer, "conn-buffer", "receive and send buffer of each connection, each (`SIZE`, 4KiB-64KiB)")
	fs.Var(&c.MemoryLimit, "memory-limit", "Go's soft memory limit (`SIZE`; the GOMEMLIMIT environment variable wins if set)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.StatsInterval, "stats-interval", c.StatsInterval, "interval of the stats line (0 = none)")
	fs.DurationVar(&c.PhaseTimeout, "phase-timeout", c.PhaseTimeout, "longest delay between the two phases of a two-phase scan")
	fs.Var(&c.PhaseMemory, "phase-memory", "memory `SIZE` of the two-phase detector's table (e.g. 32MiB; 32 bytes per phase-one SYN)")
	fs.IntVar(&c.SYNACKRate, "synack-rate", c.SYNACKRate, "SYN-ACKs per second per source for regular SYNs, after the burst (0 = no limit)")
	fs.IntVar(&c.SYNACKBurst, "synack-burst", c.SYNACKBurst, "SYN-ACKs a source's regular SYNs may get at once")
	fs.IntVar(&c.SYNACKIrregularRate, "synack-irregular-rate", c.SYNACKIrregularRate, "SYN-ACKs per second per source for irregular SYNs, after the burst (0 = no limit)")
	fs.IntVar(&c.SYNACKIrregularBurst, "synack-irregular-burst", c.SYNACKIrregularBurst, "SYN-ACKs a source's irregular SYNs may get at once")
	fs.Var(&c.SYNACKTable, "synack-table", "memory `SIZE` of the per-source SYN-ACK table (16 bytes a source; colliding sources share a budget)")
	fs.BoolVar(&c.Pure, "pure", c.Pure, "pure Spoki mode: record the first payload, then reset (no protocol handlers)")
	fs.Var(purePrefixes, "pure-prefix", "pure Spoki mode for this `CIDR` only (repeatable)")
	fs.StringVar(&c.User, "user", c.User, "after set-up, run as user `NAME` (as root the default is spoki, else nobody; root keeps uid 0); no capability is kept either way")
	fs.DurationVar(&c.Keep, "keep", c.Keep, "remove log files older than `DURATION` (0 = keep all)")
	fs.BoolVar(&c.Compress, "compress", c.Compress, "gzip hourly files once their hour is closed")
	fs.StringVar(&c.Kafka, "kafka", c.Kafka, "publish every event to these Kafka `BROKERS` (host:port,...)")
	fs.StringVar(&c.KafkaTopicPrefix, "kafka-topic-prefix", c.KafkaTopicPrefix, "prefix `P` of the Kafka topic names")
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
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	if cfg.ConfigFile != "" {
		fileCfg := defaultRunConfig()
		if err := loadYAML(cfg.ConfigFile, &fileCfg); err != nil {
			return cfg, err
		}
		// The same arguments again, onto the file's values: they parsed
		// above, so they parse here.
		prefixes, purePrefixes = nil, nil
		if err := parseFlags(runFlags(&fileCfg, &prefixes, &purePrefixes), args); err != nil {
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
	if c.Keep < 0 {
		return nil, fmt.Errorf("run: --keep %v must not be negative", c.Keep)
	}
	if err := checkPhaseMemory(c.PhaseMemory); err != nil {
		return nil, fmt.Errorf("run: --phase-memory %w", err)
	}
	if c.MaxConns < 1 {
		return nil, fmt.Errorf("run: --max-conns %d must be positive", c.MaxConns)
	}
	if c.MaxConnsPerIP < 1 {
		return nil, fmt.Errorf("run: --max-conns-per-ip %d must be positive (>= --max-conns turns the cap off)", c.MaxConnsPerIP)
	}
	if c.MaxConnsPerNet < 1 {
		return nil, fmt.Errorf("run: --max-conns-per-net %d must be positive (>= --max-conns turns the cap off)", c.MaxConnsPerNet)
	}
	if c.MaxListeners < 1 {
		return nil, fmt.Errorf("run: --max-listeners %d must be positive", c.MaxListeners)
	}
	if err := c.synackLimits().Validate(); err != nil {
		return nil, fmt.Errorf("run: --synack-*: %w", err)
	}
	if (c.SYNACKRate > 0 || c.SYNACKIrregularRate > 0) && c.SYNACKTable < netstack.SYNLimitEntryBytes {
		return nil, fmt.Errorf("run: --synack-table %v: at least %d bytes", &c.SYNACKTable, netstack.SYNLimitEntryBytes)
	}
	if c.ConnBuffer < netstack.MinConnBuffer || c.ConnBuffer > netstack.MaxConnBuffer {
		return nil, fmt.Errorf("run: --conn-buffer %s outside 4KiB-64KiB", &c.ConnBuffer)
	}
	if c.MemoryLimit < minMemoryLimit {
		return nil, fmt.Errorf("run: --memory-limit %s below %s", &c.MemoryLimit, byteSizeOf(minMemoryLimit))
	}
	if c.RequestTimeout <= 0 {
		return nil, fmt.Errorf("run: --request-timeout %v must be positive", c.RequestTimeout)
	}
	if c.Tag == "" || strings.ContainsAny(c.Tag, "/.") {
		return nil, fmt.Errorf("run: --tag %q must be non-empty without '/' or '.'", c.Tag)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if err := checkListenAddr(c.Metrics); err != nil {
		return nil, fmt.Errorf("run: --metrics: %w", err)
	}
	if err := checkListenAddr(c.Pprof); err != nil {
		return nil, fmt.Errorf("run: --pprof: %w", err)
	}
	if err := checkPprofAddr(c.Pprof, c.PprofAny); err != nil {
		return nil, fmt.Errorf("run: --pprof: %w", err)
	}
	if _, err := buildRegistry(*c); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return out, nil
}

// synackLimits is the netstack's view of the --synack-* flags.
func (c *runConfig) synackLimits() netstack.SYNACKLimits {
	return netstack.SYNACKLimits{
		Regular:      netstack.SYNACKLimit{Rate: c.SYNACKRate, Burst: c.SYNACKBurst},
		Irregular:    netstack.SYNACKLimit{Rate: c.SYNACKIrregularRate, Burst: c.SYNACKIrregularBurst},
		TableEntries: int(min(int64(c.SYNACKTable)/netstack.SYNLimitEntryBytes, netstack.MaxSYNTableEntries+1)),
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("bad log level %q (debug, info, warn, error)", s)
	}
	return l, nil
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

// sinkAdapter gives the netstack its by-value Sink on top of the file
// writer, and passes SYNs on to the live two-phase detector.
type sinkAdapter struct {
	w   *filesink.Writer
	tp  *twoPhaseFeed
	pub *kafkasink.Publisher
}

func (a sinkAdapter) Packet(p records.Packet) {
	a.w.Packet(&p)
	if p.IsSYN() {
		a.tp.SYN(&p)
		a.pub.PublishSYN(&p)
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
	// Caught from here on: SIGHUP's default action would end the
	// telescope; one during start-up is handled once ready.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	level := new(slog.LevelVar)
	l, _ := parseLevel(cfg.LogLevel)
	level.Set(l)
	log := newLogger(level)
	// Who spoki becomes once set up, known before anything is set up: a
	// bad --user leaves nothing behind.
	runAs, err := privs.RunAs(cfg.User)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	// Set before anything is allocated; said once spoki is up, so that a
	// failed start prints only its error.
	logMemory := setMemoryLimit(cfg)

	dev, err := tun.Open(tun.Config{Name: cfg.Tun, Queues: cfg.Queues, Prefixes: prefixes, NoRoute: cfg.NoRoute})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			if os.Geteuid() != 0 {
				return fmt.Errorf("run: %w (spoki needs CAP_NET_ADMIN and read-write access to /dev/net/tun: run it as root)", err)
			}
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
	// The log directory is made, handed over and opened while spoki may
	// still do so: the files outlive this run, and the user must be able
	// to append to what an earlier run (as root) wrote. The writer works
	// through the handle, so the path to the directory may be closed to
	// the user.
	if err := os.MkdirAll(cfg.LogDir, filesink.DirMode); err != nil {
		return fmt.Errorf("run: log dir: %w", err)
	}
	if runAs.UID != os.Geteuid() || runAs.GID != os.Getegid() {
		if err := filesink.Chown(cfg.LogDir, cfg.Tag, runAs.UID, runAs.GID); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	logRoot, err := os.OpenRoot(cfg.LogDir)
	if err != nil {
		return fmt.Errorf("run: log dir: %w", err)
	}
	// Everything privileged is done, and nothing has read a packet or
	// started a goroutine of its own yet: become runAs and keep no
	// capability, on every thread. The routes go with the TUN at exit.
	dropped, err := privs.Drop(runAs)
	if err != nil {
		logRoot.Close()
		return fmt.Errorf("run: %w", err)
	}
	if runAs.UID == 0 {
		log.Warn("running as root", "user", runAs.Name,
			"reason", "asked by --user; no capability is kept, but uid 0 owns most of the system's files: prefer an unprivileged user")
	}
	privs := []any{"user", runAs.Name, "uid", runAs.UID, "gid", runAs.GID, "capabilities", "none", "no_new_privs", true}
	if dropped.Bounding != 0 {
		// An unprivileged start without CAP_SETPCAP: harmless with no
		// capability anywhere else and no_new_privs.
		privs = append(privs, "bounding_kept", fmt.Sprintf("%#x", dropped.Bounding))
	}
	log.Info("privileges dropped", privs...)
	if cfg.ConfigFile != "" {
		// SIGHUP reads the file again, as this user.
		if f, err := os.Open(cfg.ConfigFile); err != nil {
			log.Warn("config file unreadable after the drop: SIGHUP will not reload it", "config", cfg.ConfigFile, "user", runAs.Name, "err", err)
		} else {
			f.Close()
		}
	}
	sink, err := filesink.New(filesink.Config{Dir: cfg.LogDir, Root: logRoot, Tag: cfg.Tag, Compress: cfg.Compress, Keep: cfg.Keep,
		Logger: log.With("component", "filesink")})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer func() {
		if cerr := sink.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("run: close logs: %w", cerr)
		}
	}()

	// Kafka: nil without --kafka, and every method of a nil Publisher is a
	// no-op. Closed after the stack and the detector stop, before the
	// files close (defers run in reverse).
	var pub *kafkasink.Publisher
	if cfg.Kafka != "" {
		pub, err = kafkasink.New(kafkasink.Config{Brokers: strings.Split(cfg.Kafka, ","),
			TopicPrefix: cfg.KafkaTopicPrefix, Tag: cfg.Tag, Logger: log.With("component", "kafkasink")})
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		defer func() {
			if cerr := pub.Close(); cerr != nil {
				// The files hold everything: a broker that is down loses
				// only the copy, and says so.
				log.Warn("kafka close", "error", cerr)
			}
		}()
	}
	// Publish first: the file sink takes the line over.
	emitEvent := func(t time.Time, line []byte) {
		pub.PublishLine(line)
		sink.Event(t, line)
	}

	tp := newTwoPhaseFeedMemory(cfg.PhaseTimeout, cfg.PhaseMemory, cfg.FirstDataTimeout+cfg.TotalTimeout+10*time.Second, emitEvent, log.With("component", "twophase"))
	tp.logTable()
	tpCtx, tpStop := context.WithCancel(context.Background())
	tpDone := make(chan struct{})
	go func() { defer close(tpDone); tp.run(tpCtx) }()
	// Runs after the stack stopped (deferred later) and before the files
	// close (deferred earlier): the detector's last events are written.
	defer func() { tpStop(); <-tpDone }()

	// The stack is built after the Mux but the collector reads it at
	// scrape time only, once the server is up.
	var st *netstack.Stack
	muxes := &muxSet{}
	tel := newTelemetry(metricsSources{
		Netstack:     func() netstack.Snapshot { return st.Stats().Snapshot() },
		Mux:          muxes.snapshot,
		Sink:         sink.Stats,
		SinkCapacity: [3]int{filesink.DefaultPacketQueue, filesink.DefaultReplyQueue, filesink.DefaultEventQueue},
		TwoPhase:     tp,
		TUN:          dev.Stats,
	})
	// newMux builds a Mux over reg; a reload builds another with the same
	// budgets and sinks, and swaps it in.
	newMux := func(reg *handlers.Registry) (*handlers.Mux, error) {
		return handlers.NewMux(handlers.MuxConfig{
			Registry: reg,
			Emit: func(se *records.Session) {
				// Read before the sink takes ownership of se.
				tel.observeSession(se)
				pub.PublishSession(se)
				sink.Session(se)
				tp.Session(se)
			},
			EmitEvent:        emitEvent,
			Logger:           log.With("component", "handlers"),
			FirstDataTimeout: cfg.FirstDataTimeout,
			IdleTimeout:      cfg.IdleTimeout,
			TotalTimeout:     cfg.TotalTimeout,
			RequestTimeout:   cfg.RequestTimeout,
		})
	}
	reg, err := buildRegistry(cfg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	mux, err := newMux(reg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	muxes.swap(mux)
	limits := cfg.synackLimits()
	st, err = netstack.New(netstack.Config{
		SYNACKLimits: &limits,
		Device:       dev,
		MTU:          uint32(dev.MTU()),
		Prefixes:     prefixes,
		MaxConns:     cfg.MaxConns,
		IdleTimeout:  cfg.IdleTimeout,
		TotalTimeout: cfg.TotalTimeout,
		ConnBuffer:   int(cfg.ConnBuffer),
		Handle:       muxes.ServeConn,
		Pure:         muxes.Pure,
		Sink:         sinkAdapter{sink, tp, pub},
		Logger:       log.With("component", "netstack"),

		MaxConnsPerIP:  cfg.MaxConnsPerIP,
		MaxConnsPerNet: cfg.MaxConnsPerNet,
		MaxListeners:   cfg.MaxListeners,
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
		if a, ok := ln.Addr().(*net.TCPAddr); !cfg.PprofAny && (!ok || !a.IP.IsLoopback()) {
			// A name (localhost) that resolved elsewhere.
			ln.Close()
			return fmt.Errorf("run: --pprof %s listens on %s, not loopback (--pprof-any allows it)", cfg.Pprof, ln.Addr())
		}
		srv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: pprofWriteTimeout, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		defer srv.Close()
		go srv.Serve(ln)
	}
	metrics := &metricsServer{handler: tel.handler(), log: log.With("component", "metrics")}
	if err := metrics.listen(cfg.Metrics); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer metrics.close()

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Start from a collected heap, so that heap_live in the stats lines
	// measures growth from here (the queues were just allocated).
	debug.FreeOSMemory()
	logMemory(log)
	ready := []any{"tun", dev.Name(), "queues", len(dev.FDs()), "prefixes", cfg.Prefixes, "log_dir", cfg.LogDir, "tag", cfg.Tag}
	if cfg.Metrics != "" {
		ready = append(ready, "metrics", cfg.Metrics)
	}
	ready = append(ready, "synack_limit", limits.String())
	log.Info("ready", ready...)

	stats := &statsTicker{}
	stats.set(cfg.StatsInterval)
	defer stats.set(0)
	live := &liveConfig{
		args: args, cfg: cfg, log: log, level: level,
		muxes: muxes, newMux: newMux, metrics: metrics, stats: stats,
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			st.Close()
			logStats(log, st, muxes, sink, tp, dev, "final")
			return nil
		case <-hup:
			live.reload()
		case <-stats.c:
			logStats(log, st, muxes, sink, tp, dev, "stats")
		}
	}
}

// pprofWriteTimeout bounds one pprof response. A CPU profile or trace
// runs for its ?seconds= before it answers; pprof refuses durations of
// this or more.
const pprofWriteTimeout = 2 * time.Minute

// checkPprofAddr refuses a --pprof address that is not loopback unless
// anyAddr is set: pprof shows the process's memory and its profiles can stall
// it, so it is for the operator on the host alone. addr passed
// checkListenAddr; a name other than localhost is refused, and what
// localhost resolves to is checked once listening.
func checkPprofAddr(addr string, anyAddr bool) error {
	if addr == "" || anyAddr {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // checkListenAddr reports it
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address (pprof exposes the process's memory): bind to 127.0.0.1 or [::1], or add --pprof-any", addr)
}

// statsTicker is the stats line's clock; a reload may change its interval.
type statsTicker struct {
	t *time.Ticker
	c <-chan time.Time // nil when off: a nil channel never fires
}

// set restarts the clock at interval d; 0 stops it.
func (s *statsTicker) set(d time.Duration) {
	if s.t != nil {
		s.t.Stop()
		s.t, s.c = nil, nil
	}
	if d > 0 {
		s.t = time.NewTicker(d)
		s.c = s.t.C
	}
}

// muxSet hands connections to the current Mux. A reload swaps in a Mux
// over the new Registry: connections already being served finish on the
// old one, new ones go to the new one, and nothing waits. The Registry
// itself must not change while a Mux serves (its doc), hence a new Mux
// rather than a new Registry in the old one. Each Mux keeps its own
// counters, so the set keeps every Mux it ever served with, one per
// reload, and sums them.
type muxSet struct {
	cur atomic.Pointer[handlers.Mux]
	mu  sync.Mutex
	all []*handlers.Mux // +checklocks:mu
}

// ServeConn serves c with the current Mux. It has the signature
// netstack.Config.Handle takes.
func (s *muxSet) ServeConn(c net.Conn, f records.Flow) { s.cur.Load().ServeConn(c, f) }

// swap makes m the Mux for new connections.
func (s *muxSet) swap(m *handlers.Mux) {
	s.mu.Lock()
	s.all = append(s.all, m)
	s.mu.Unlock()
	s.cur.Store(m)
}

// snapshot sums the counters of every Mux of the set.
func (s *muxSet) snapshot() handlers.StatsSnapshot {
	s.mu.Lock()
	all := slices.Clone(s.all)
	s.mu.Unlock()
	sum := handlers.StatsSnapshot{ByHandler: map[string]uint64{}}
	for _, m := range all {
		x := m.Stats().Snapshot()
		sum.Sessions += x.Sessions
		sum.FirstDataTimeouts += x.FirstDataTimeouts
		sum.FirstDataClosed += x.FirstDataClosed
		sum.Errors += x.Errors
		sum.BudgetExceeded += x.BudgetExceeded
		sum.BudgetRequest += x.BudgetRequest
		sum.BudgetIdle += x.BudgetIdle
		sum.BudgetTotal += x.BudgetTotal
		sum.BudgetBytes += x.BudgetBytes
		sum.Panics += x.Panics
		sum.Events += x.Events
		sum.EventsDropped += x.EventsDropped
		for k, v := range x.ByHandler {
			sum.ByHandler[k] += v
		}
	}
	return sum
}

// liveConfig is what SIGHUP may change in a running telescope, and the
// config it runs with. reload runs on runMain's goroutine only.
type liveConfig struct {
	args    []string
	cfg     runConfig
	log     *slog.Logger
	level   *slog.LevelVar
	muxes   *muxSet
	newMux  func(*handlers.Registry) (*handlers.Mux, error)
	metrics *metricsServer
	stats   *statsTicker
}

// reload reads the config file again (the flags still win), applies what
// can change without a restart, and logs one `not reloaded` line per
// change it could not apply. A file with a problem changes nothing.
func (lc *liveConfig) reload() {
	if lc.cfg.ConfigFile == "" {
		lc.log.Warn("reload failed", "err", "no --config file to read")
		return
	}
	next, err := parseRunFlags(lc.args)
	if err == nil {
		_, err = next.validate()
	}
	if err != nil {
		lc.log.Warn("reload failed", "config", lc.cfg.ConfigFile, "err", err)
		return
	}
	plan := planReload(lc.cfg, next)
	for _, c := range plan.Restart {
		lc.log.Warn("not reloaded", "key", c.Key, "running", c.Old, "file", c.New, "reason", "needs a restart")
	}
	var applied []string
	if plan.has("metrics") {
		if err := lc.metrics.listen(next.Metrics); err != nil {
			lc.log.Warn("not reloaded", "key", "metrics", "running", lc.cfg.Metrics, "file", next.Metrics, "reason", err)
			next.Metrics = lc.cfg.Metrics
		} else {
			applied = append(applied, "metrics")
		}
	}
	if plan.has("handlers", "pure", "pure-prefix") {
		// validate built this registry once already: it cannot fail here
		// short of a bug, and then the old Mux stays.
		reg, err := buildRegistry(next)
		var mux *handlers.Mux
		if err == nil {
			mux, err = lc.newMux(reg)
		}
		if err != nil {
			lc.log.Error("reload failed", "key", "handlers", "err", err)
			next.Handlers, next.Pure, next.PurePrefixes = lc.cfg.Handlers, lc.cfg.Pure, lc.cfg.PurePrefixes
		} else {
			lc.muxes.swap(mux)
			applied = append(applied, "handlers")
		}
	}
	if plan.has("log-level") {
		l, _ := parseLevel(next.LogLevel) // validated
		lc.level.Set(l)
		applied = append(applied, "log-level")
	}
	if plan.has("stats-interval") {
		lc.stats.set(next.StatsInterval)
		applied = append(applied, "stats-interval")
	}
	lc.cfg = applyReloadable(lc.cfg, next)
	lc.log.Info("reloaded", "config", lc.cfg.ConfigFile, "applied", applied, "not_applied", len(plan.Restart))
}

// Memory limit: GOMEMLIMIT's default in spoki, and the least that makes
// sense (the queues and tables preallocated at start take tens of MiB).
const (
	defaultMemoryLimit = 256 << 20
	minMemoryLimit     = 32 << 20
)

func byteSizeOf(n int64) *byteSize { b := byteSize(n); return &b }

// setMemoryLimit sets Go's soft memory limit from --memory-limit, unless
// the GOMEMLIMIT environment variable is set: then the runtime already
// applied it, and it wins (it is Go's own knob, and an operator who set it
// meant it). Either way the start-up line it returns says which limit
// holds, and what the connections' buffers can hold at most next to it.
func setMemoryLimit(cfg runConfig) (logLine func(*slog.Logger)) {
	source := "memory-limit"
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		source = "GOMEMLIMIT=" + env
	} else {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	}
	limit := debug.SetMemoryLimit(-1)
	buffers := netstack.ConnBufferBudget(cfg.MaxConns, int(cfg.ConnBuffer))
	attrs := []any{"limit", byteSizeOf(limit).String(), "source", source,
		"conn_buffers", fmt.Sprintf("%d × 2 × %s = %s", cfg.MaxConns, &cfg.ConnBuffer, byteSizeOf(buffers))}
	return func(log *slog.Logger) {
		if buffers > limit/2 {
			// A soft limit below what connections may hold makes the GC
			// run flat out under a slowloris instead of failing: say so.
			log.Warn("memory", append(attrs, "problem", "connection buffers can take more than half the memory limit: lower --max-conns or --conn-buffer")...)
			return
		}
		log.Info("memory", attrs...)
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
func logStats(log *slog.Logger, st *netstack.Stack, muxes *muxSet, sink *filesink.Writer, tp *twoPhaseFeed, dev tun.Device, msg string) {
	s := st.Stats().Snapshot()
	m := muxes.snapshot()
	w := sink.Stats()
	attrs := []slog.Attr{
		slog.Uint64("packets_in", s.PacketsIn),
		slog.Uint64("synacks_out", s.SYNACKsSent),
		slog.Uint64("handshakes", s.Handshakes),
		slog.Uint64("pure_resets", s.PureResets),
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
		slog.Uint64("drop_source_limit", s.DropSourceLimit),
		slog.Uint64("drop_net_limit", s.DropNetLimit),
		slog.Uint64("drop_listener", s.DropListener+s.DropListenerCap),
		slog.Int64("listeners", s.Listeners),
		slog.Uint64("reset_early", s.AcceptReset),
		slog.Uint64("linger_evicted", s.LingerEvicted),
		slog.Uint64("budget_request", m.BudgetRequest),
		slog.Uint64("budget_idle", m.BudgetIdle),
		slog.Uint64("budget_total", m.BudgetTotal),
		slog.Uint64("budget_bytes", m.BudgetBytes),
		slog.Uint64("drop_non_tcp", s.DropUDP+s.DropICMP+s.DropOtherProto),
		slog.Uint64("drop_syn_rate_regular", s.DropSYNRateRegular),
		slog.Uint64("drop_syn_rate_irregular", s.DropSYNRateIrregular),
		slog.Uint64("drop_bad_flags", s.DropBadFlags),
		slog.Uint64("drop_bad_source", s.DropBadSource),
		slog.Uint64("drop_ext_header", s.DropExtHeader),
		slog.Uint64("drop_fragment", s.DropFragment),
		slog.Uint64("records_dropped", w.DropPacketQueueFull+w.DropReplyQueueFull+w.DropEventQueueFull+w.DropClosed+w.DropWriteError),
		slog.Int("queue_packets", w.PacketQueue),
		slog.Uint64("bytes_written", w.BytesWritten),
	}
	if _, _, txDropped, err := dev.Stats(); err == nil {
		attrs = append(attrs, slog.Uint64("tun_dropped", txDropped))
	}
	attrs = append(attrs, slog.Uint64("two_phase", tp.events.Load()), slog.Uint64("two_phase_dropped", tp.dropped()))
	attrs = append(attrs, twoPhaseAttrs(tp)...)
	heap, rss := memStats()
	attrs = append(attrs, slog.Uint64("heap_live", heap), slog.Uint64("rss", rss))
	log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}
