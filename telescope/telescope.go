// Package telescope is `spoki run` once its flags are parsed: it sets up
// the stages in order (the TUN device and its routes, the log files, the
// privilege drop, Kafka and the two-phase detector, the handlers' Mux and
// the netstack, the pprof and metrics servers), serves until a signal ends
// it, writing the stats line and reloading the config file on SIGHUP, and
// takes the stages down in the reverse order.
package telescope

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // serves --pprof on http.DefaultServeMux
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/config"
	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/netstack/udpreply"
	"github.com/spoki-telescope/spoki/privs"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
	"github.com/spoki-telescope/spoki/stats"
	"github.com/spoki-telescope/spoki/stats/promstats"
	"github.com/spoki-telescope/spoki/tun"
)

// sinkAdapter gives the netstack its by-value Sink on top of the file
// writer, and passes SYNs on to the live two-phase detector.
type sinkAdapter struct {
	w   *filesink.Writer
	tp  *twoPhaseFeed
	pub *kafkasink.Publisher
}

func (a sinkAdapter) Packet(p records.Packet) {
	a.w.Packet(&p)
	a.syn(&p)
}

// syn passes a SYN on to the two-phase detector and Kafka.
func (a sinkAdapter) syn(p *records.Packet) {
	if p.IsSYN() {
		a.tp.SYN(p)
		a.pub.PublishSYN(p)
	}
}
func (a sinkAdapter) Reply(r records.Reply) { a.w.Reply(&r) }

// Records is the batch of one TUN read (netstack.BatchSink): one queue
// entry of the writer for all of it.
func (a sinkAdapter) Records(pkts []records.Packet, reps []records.Reply) {
	a.w.Records(pkts, reps)
	for i := range pkts {
		a.syn(&pkts[i])
	}
}

// Backlogged is the writer's (netstack.Backlogger): the TUN readers wait
// while it is behind, so that what they answer keeps its rows.
func (a sinkAdapter) Backlogged() bool { return a.w.Backlogged() }

// Options are what Run needs from the command line.
type Options struct {
	// Config is the parsed configuration (flags over the file), not yet
	// validated.
	Config config.Run
	// Reparse reads the flags and the config file again, for SIGHUP.
	Reparse func() (config.Run, error)
	// NewLogger returns the logger at level (a *slog.LevelVar that a
	// reload may change).
	NewLogger func(level slog.Leveler) *slog.Logger
	// Status, if set (--progress on a terminal), shows the stats as one
	// line redrawn in place instead of a stats line per interval; the
	// logger writes through it so that its lines scroll above.
	Status StatusLine
}

// StatusLine is a line redrawn in place at the bottom of a terminal
// (assemble.StatusLine).
type StatusLine interface {
	// Set replaces the line.
	Set(line string)
	// Done erases it.
	Done()
}

// Run is `spoki run`: set up, serve until ctx ends or a signal ends it,
// close.
func Run(ctx context.Context, o Options) (err error) {
	t, err := setUp(o)
	if t != nil {
		defer func() {
			if cerr := t.close(); err == nil {
				err = cerr
			}
		}()
	}
	if err != nil {
		return err
	}
	return t.serve(ctx)
}

// running is what `spoki run` runs: built by setUp, served by serve,
// and taken down by close in the reverse order of its set-up.
type running struct {
	reparse func() (config.Run, error)
	cfg     config.Run
	log     *slog.Logger
	level   *slog.LevelVar
	// hup is caught from the start: SIGHUP's default action would end the
	// telescope; one during start-up is handled once ready.
	hup       chan os.Signal
	status    StatusLine // nil: stats lines
	logMemory func(*slog.Logger)
	dev       tun.Device
	sink      *filesink.Writer
	pub       *kafkasink.Publisher
	emitEvent func(time.Time, []byte)
	tp        *twoPhaseFeed
	tel       *promstats.Telemetry
	src       metricsSources
	muxes     *muxSet
	newMux    func(*handlers.Registry) (*handlers.Mux, error)
	st        *netstack.Stack
	limits    netstack.SYNACKLimits
	// replyLim are the limits of the ICMP and UDP answers.
	replyLim netstack.ReplyLimits
	metrics  *promstats.Server
	// closers undo the set-up, run last first; the first error is kept.
	closers []func() error

	// procs is GOMAXPROCS as setProcs left it, and where it came from.
	procs       int
	procsSource string
}

// onClose adds a step of the take-down.
func (t *running) onClose(f func() error) { t.closers = append(t.closers, f) }

// close runs the take-down: the stack stops before the detector, the
// detector before the files, the files before the TUN and its routes.
func (t *running) close() error {
	var err error
	for i := len(t.closers) - 1; i >= 0; i-- {
		if cerr := t.closers[i](); err == nil {
			err = cerr
		}
	}
	t.closers = nil
	return err
}

// setUp builds the telescope from the arguments. On an error it returns
// what it built so far, for the caller to close.
func setUp(o Options) (*running, error) {
	cfg := o.Config
	prefixes, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	t := &running{reparse: o.Reparse, cfg: cfg, level: new(slog.LevelVar), hup: make(chan os.Signal, 1), status: o.Status}
	// Before any event is written: every event says which sensor wrote it.
	records.SetOrigin(records.Origin{Host: cfg.EventHost(), CommunityIDSeed: uint16(cfg.CommunityIDSeed)})
	signal.Notify(t.hup, syscall.SIGHUP)
	t.onClose(func() error { signal.Stop(t.hup); return nil })
	l, _ := config.ParseLevel(cfg.LogLevel)
	t.level.Set(l)
	t.log = o.NewLogger(t.level)
	// Who spoki becomes once set up, known before anything is set up: a
	// bad --user leaves nothing behind.
	runAs, err := privs.RunAs(cfg.User)
	if err != nil {
		return t, fmt.Errorf("run: %w", err)
	}
	// Set before anything is allocated; said once spoki is up, so that a
	// failed start prints only its error.
	t.logMemory = setMemoryLimit(cfg)
	t.procs, t.procsSource = setProcs()
	if err := t.openTUN(prefixes); err != nil {
		return t, err
	}
	if err := t.openLogs(runAs); err != nil {
		return t, err
	}
	if err := t.startDetector(); err != nil {
		return t, err
	}
	if err := t.startStack(prefixes); err != nil {
		return t, err
	}
	return t, t.startServers()
}

// openTUN opens the TUN device and adds the routes, which go with it at
// close.
func (t *running) openTUN(prefixes []netip.Prefix) error {
	cfg := t.cfg
	dev, err := tun.Open(tun.Config{Name: cfg.Tun, Queues: cfg.Queues, Prefixes: prefixes, NoRoute: cfg.NoRoute, RawReplies: !cfg.TunReplies})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			if os.Geteuid() != 0 {
				return fmt.Errorf("run: %w (spoki needs CAP_NET_ADMIN and read-write access to /dev/net/tun: run it as root)", err)
			}
			return fmt.Errorf("run: %w (spoki needs CAP_NET_ADMIN: run it as root)", err)
		}
		return fmt.Errorf("run: %w", err)
	}
	t.dev = dev
	t.onClose(func() error {
		if cerr := dev.Close(); cerr != nil {
			return fmt.Errorf("run: %w", cerr)
		}
		return nil
	})
	return nil
}

// openLogs makes and opens the log directory, drops privileges and opens
// the file sink. The files close before the TUN and routes go.
func (t *running) openLogs(runAs privs.User) error {
	cfg, log := t.cfg, t.log
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
	if err := t.dropPrivileges(runAs); err != nil {
		logRoot.Close()
		return err
	}
	sink, err := filesink.New(filesink.Config{Dir: cfg.LogDir, Root: logRoot, Tag: cfg.Tag, Compress: cfg.Compress, CompressWorkers: cfg.CompressWorkers, Keep: cfg.Keep,
		Logger: log.With("component", "filesink"), OmitSYNEvents: !cfg.SYNEvents,
		UDPFields: udpreply.AppendFields})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	t.sink = sink
	t.onClose(func() error {
		if cerr := sink.Close(); cerr != nil {
			return fmt.Errorf("run: close logs: %w", cerr)
		}
		return nil
	})
	return nil
}

// dropPrivileges becomes runAs and keeps no capability, on every thread:
// everything privileged is done, and nothing has read a packet or started
// a goroutine of its own yet. The routes go with the TUN at exit.
func (t *running) dropPrivileges(runAs privs.User) error {
	cfg, log := t.cfg, t.log
	dropped, err := privs.Drop(runAs)
	if err != nil {
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
	return nil
}

// startDetector connects Kafka (if asked) and starts the two-phase
// detector, whose events go to Kafka and the files.
func (t *running) startDetector() error {
	cfg, log := t.cfg, t.log
	// Kafka: nil without --kafka, and every method of a nil Publisher is a
	// no-op. Closed after the stack and the detector stop, before the
	// files close.
	if cfg.Kafka != "" {
		tlsCfg, saslCfg, err := cfg.KafkaAuth()
		if err != nil {
			return fmt.Errorf("run: kafka: %w", err)
		}
		pub, err := kafkasink.New(kafkasink.Config{Brokers: strings.Split(cfg.Kafka, ","),
			TopicPrefix: cfg.KafkaTopicPrefix, Tag: cfg.Tag, Logger: log.With("component", "kafkasink"),
			TLS: tlsCfg, SASL: saslCfg, Host: cfg.EventHost()})
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		t.pub = pub
		t.onClose(func() error {
			if cerr := pub.Close(); cerr != nil {
				// The files hold everything: a broker that is down loses
				// only the copy, and says so.
				log.Warn("kafka close", "error", cerr)
			}
			return nil
		})
	}
	pub, sink := t.pub, t.sink
	// Publish first: the file sink takes the line over.
	t.emitEvent = func(at time.Time, line []byte) {
		pub.PublishLine(line)
		sink.Event(at, line)
	}
	tp := newTwoPhaseFeedMemory(cfg.PhaseTimeout, cfg.PhaseMemory, cfg.FirstDataTimeout+cfg.TotalTimeout+10*time.Second, t.emitEvent, log.With("component", "twophase"))
	tp.SetAlerts(cfg.Alerts)
	tp.logTable()
	t.tp = tp
	tpCtx, tpStop := context.WithCancel(context.Background())
	tpDone := make(chan struct{})
	go func() { defer close(tpDone); tp.run(tpCtx) }()
	// Runs after the stack stopped and before the files close: the
	// detector's last events are written.
	t.onClose(func() error { tpStop(); <-tpDone; return nil })
	return nil
}

// startStack builds the Mux over the configured handlers and the netstack
// that hands it connections, and the collector that reads them.
func (t *running) startStack(prefixes []netip.Prefix) error {
	cfg, log, dev, sink, tp, pub := t.cfg, t.log, t.dev, t.sink, t.tp, t.pub
	// The stack is built after the Mux but the collector reads it at
	// scrape time only, once the server is up.
	t.muxes = &muxSet{}
	t.src = metricsSources{
		Netstack:     func() netstack.Snapshot { return t.st.Stats().Snapshot() },
		Mux:          t.muxes.snapshot,
		Sink:         sink.Stats,
		SinkCapacity: [3]int{filesink.DefaultPacketQueue, filesink.DefaultReplyQueue, filesink.DefaultEventQueue},
		TwoPhase:     tp,
		TUN:          dev.Stats,
	}
	if pub != nil {
		t.src.Kafka = pub.Stats
	}
	t.tel = newTelemetry(t.src)
	t.newMux = t.muxFor
	reg, err := config.BuildRegistry(cfg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	mux, err := t.newMux(reg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	t.muxes.swap(mux)
	t.limits = cfg.SYNACKLimits()
	t.replyLim = cfg.ReplyLimits()
	muxes := t.muxes
	personaDefault, personaPrefixes, err := cfg.Personas()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	st, err := netstack.New(netstack.Config{
		SYNACKLimits: &t.limits,
		Device:       dev,
		MTU:          uint32(dev.MTU()),
		Prefixes:     prefixes,
		MaxConns:     cfg.MaxConns,
		IdleTimeout:  cfg.IdleTimeout,
		TotalTimeout: cfg.TotalTimeout,
		ConnBuffer:   int(cfg.ConnBuffer),
		Handle:       muxes.ServeConn,
		Pure:         muxes.Pure,
		Persona:      netstack.PersonaLookup(personaDefault, personaPrefixes),
		Sink:         sinkAdapter{sink, tp, pub},
		Logger:       log.With("component", "netstack"),

		MaxConnsPerIP:  cfg.MaxConnsPerIP,
		MaxConnsPerNet: cfg.MaxConnsPerNet,
		MaxListeners:   cfg.MaxListeners,
		RecordWait:     cfg.RecordWait,

		ICMPOff:     cfg.ICMP == "off",
		UDPOff:      cfg.UDP == "off",
		ReplyLimits: &t.replyLim,
	})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	t.st = st
	// Stop the stack before the detector, the device and the files: no
	// packet is read once files start closing.
	t.onClose(func() error { st.Close(); return nil })
	return nil
}

// muxFor builds a Mux over reg; a reload builds another with the same
// budgets and sinks, and swaps it in.
func (t *running) muxFor(reg *handlers.Registry) (*handlers.Mux, error) {
	cfg, tel, pub, sink, tp := t.cfg, t.tel, t.pub, t.sink, t.tp
	return handlers.NewMux(handlers.MuxConfig{
		Registry: reg,
		Emit: func(se *records.Session) {
			// Read before the sink takes ownership of se.
			tel.ObserveSession(se)
			pub.PublishSession(se)
			sink.Session(se)
			tp.Session(se)
		},
		EmitEvent:        t.emitEvent,
		Alerts:           cfg.Alerts,
		Logger:           t.log.With("component", "handlers"),
		FirstDataTimeout: cfg.FirstDataTimeout,
		IdleTimeout:      cfg.IdleTimeout,
		TotalTimeout:     cfg.TotalTimeout,
		RequestTimeout:   cfg.RequestTimeout,
	})
}

// startServers starts the pprof server (if asked) and the metrics server.
func (t *running) startServers() error {
	cfg := t.cfg
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
		t.onClose(func() error { srv.Close(); return nil })
		go srv.Serve(ln)
	}
	t.metrics = promstats.NewServer(t.tel.Handler(), t.log.With("component", "metrics"))
	if err := t.metrics.Listen(cfg.Metrics); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	t.onClose(func() error { t.metrics.Close(); return nil })
	return nil
}

// serve says the telescope is ready and runs until ctx ends or SIGINT or
// SIGTERM comes: it writes the stats line and reloads the config on SIGHUP.
func (t *running) serve(ctx context.Context) error {
	cfg, log, dev := t.cfg, t.log, t.dev
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Start from a collected heap, so that heap_live in the stats lines
	// measures growth from here (the queues were just allocated).
	debug.FreeOSMemory()
	t.logMemory(log)
	go releaseFreeHeap(ctx, releaseEvery, releaseAbove, nil)
	ready := []any{"tun", dev.Name(), "queues", len(dev.Queues()), "prefixes", cfg.Prefixes, "log_dir", cfg.LogDir, "tag", cfg.Tag}
	if cfg.Metrics != "" {
		ready = append(ready, "metrics", cfg.Metrics)
	}
	ready = append(ready, "icmp", t.cfg.ICMP, "udp", t.cfg.UDP, "reply_limit", t.replyLim.String())
	ready = append(ready, "synack_limit", t.limits.String())
	ready = append(ready, "procs", t.procs, "procs_source", t.procsSource)
	if ld, ok := dev.(*tun.Linux); ok {
		if rerr := ld.RawReplies(); rerr != nil {
			ready = append(ready, "replies", "tun", "raw_replies", rerr.Error())
		} else {
			ready = append(ready, "replies", "raw")
		}
	}
	log.Info("ready", ready...)

	stats := &statsTicker{}
	stats.set(cfg.StatsInterval)
	statsLog := newStatsLogger(log, t.src, !stderrIsTerminal())
	statsLog.status = t.status
	defer stats.set(0)
	live := &liveConfig{
		reparse: t.reparse, cfg: cfg, log: log, level: t.level,
		muxes: t.muxes, newMux: t.newMux, metrics: t.metrics, stats: stats,
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			t.st.Close()
			if t.status != nil {
				t.status.Done()
			}
			logStats(log, t.src, "final")
			return nil
		case <-t.hup:
			live.reload()
		case <-stats.c:
			statsLog.tick()
		}
	}
}

// pprofWriteTimeout bounds one pprof response. A CPU profile or trace
// runs for its ?seconds= before it answers; pprof refuses durations of
// this or more.
const pprofWriteTimeout = 2 * time.Minute

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

// Pure reports whether the current Mux puts connections to the local address
// a in pure Spoki mode; it has the signature netstack.Config.Pure takes, and
// follows a reload as ServeConn does.
func (s *muxSet) Pure(a netip.Addr) bool { return s.cur.Load().Pure(a) }

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
		stats.Sum(&sum, m.Stats().Snapshot())
	}
	return sum
}

// liveConfig is what SIGHUP may change in a running telescope, and the
// config it runs with. reload runs on runMain's goroutine only.
type liveConfig struct {
	reparse func() (config.Run, error)
	cfg     config.Run
	log     *slog.Logger
	level   *slog.LevelVar
	muxes   *muxSet
	newMux  func(*handlers.Registry) (*handlers.Mux, error)
	metrics *promstats.Server
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
	next, err := lc.reparse()
	if err == nil {
		_, err = next.Validate()
	}
	if err != nil {
		lc.log.Warn("reload failed", "config", lc.cfg.ConfigFile, "err", err)
		return
	}
	plan := config.PlanReload(lc.cfg, next)
	for _, c := range plan.Restart {
		lc.log.Warn("not reloaded", "key", c.Key, "running", c.Old, "file", c.New, "reason", "needs a restart")
	}
	var applied []string
	if plan.Has("metrics") {
		if err := lc.metrics.Listen(next.Metrics); err != nil {
			lc.log.Warn("not reloaded", "key", "metrics", "running", lc.cfg.Metrics, "file", next.Metrics, "reason", err)
			next.Metrics = lc.cfg.Metrics
		} else {
			applied = append(applied, "metrics")
		}
	}
	if plan.Has("handlers", "pure", "pure-prefix") {
		// Validate built this registry once already: it cannot fail here
		// short of a bug, and then the old Mux stays.
		reg, err := config.BuildRegistry(next)
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
	if plan.Has("log-level") {
		l, _ := config.ParseLevel(next.LogLevel) // validated
		lc.level.Set(l)
		applied = append(applied, "log-level")
	}
	if plan.Has("stats-interval") {
		lc.stats.set(next.StatsInterval)
		applied = append(applied, "stats-interval")
	}
	lc.cfg = config.ApplyReloadable(lc.cfg, next)
	lc.log.Info("reloaded", "config", lc.cfg.ConfigFile, "applied", applied, "not_applied", len(plan.Restart))
}

// setMemoryLimit sets Go's soft memory limit from --memory-limit, unless
// the GOMEMLIMIT environment variable is set: then the runtime already
// applied it, and it wins (it is Go's own knob, and an operator who set it
// meant it). Either way the start-up line it returns says which limit
// holds, and what the connections' buffers can hold at most next to it.
func setMemoryLimit(cfg config.Run) (logLine func(*slog.Logger)) {
	source := "memory-limit"
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		source = "GOMEMLIMIT=" + env
	} else {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	}
	gcSource := "gc-percent"
	if env := os.Getenv("GOGC"); env != "" {
		gcSource = "GOGC=" + env
	} else {
		debug.SetGCPercent(cfg.GCPercent)
	}
	// Read back, not set: SetGCPercent(-1) would turn the collector off
	// for a moment (SetMemoryLimit(-1), below, only reads).
	gc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gc)
	gcPercent := int(gc[0].Value.Uint64())
	limit := debug.SetMemoryLimit(-1)
	buffers := netstack.ConnBufferBudget(cfg.MaxConns, int(cfg.ConnBuffer))
	attrs := []any{"limit", sizeOf(limit).String(), "source", source, "gc_percent", gcPercent, "gc_source", gcSource,
		"conn_buffers", fmt.Sprintf("%d × 2 × %s = %s", cfg.MaxConns, &cfg.ConnBuffer, sizeOf(buffers))}
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

// sizeOf is n as a config.Size, for its String.
func sizeOf(n int64) *config.Size { b := config.Size(n); return &b }
