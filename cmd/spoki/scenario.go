package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/scenarios"
)

// scenarioUsage is printed for `spoki scenario` without a valid subcommand.
const scenarioUsage = `usage: spoki scenario run [flags] FILE... | --builtin
       spoki scenario replay [flags] PCAP
       spoki scenario list
run runs packetdrill-like scenario files (scenarios/README.md) from the
lab's scanner host against a live telescope and prints a pass or fail line
per step; replay sends the client side of a pcap capture into the prefixes.
Without --netns they build their own lab and telescope and remove them at
the end; with --netns SCAN (and --log-dir DIR for the event checks) they
use a running one. Both need root.`

// scenarioReadyTimeout bounds the start of the telescope this command runs.
const scenarioReadyTimeout = 20 * time.Second

// scenarioMain runs `spoki scenario SUBCOMMAND ...`. It returns
// scenarios.ErrFailed (after the failures were printed) when a step or a
// replayed connection failed.
func scenarioMain(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		return fmt.Errorf("scenario: missing subcommand\n%s", scenarioUsage)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "run":
		return scenarioRun(ctx, os.Stdout, rest)
	case "replay":
		return scenarioReplay(ctx, os.Stdout, rest)
	case "list":
		for _, n := range scenarios.BuiltinNames() {
			fmt.Println(n)
		}
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Println(scenarioUsage)
		return nil
	default:
		return fmt.Errorf("scenario: unknown subcommand %q\n%s", sub, scenarioUsage)
	}
}

// scenarioEnv are the flags run and replay share: where the telescope is.
type scenarioEnv struct {
	netns, logDir, tag, bin string
	prefixes                prefixList
	verbose                 bool
}

// register adds the shared flags to fs.
func (e *scenarioEnv) register(fs *flag.FlagSet) {
	fs.StringVar(&e.netns, "netns", "", "scanner `NS` of a running lab (default: build a lab and a telescope)")
	fs.StringVar(&e.logDir, "log-dir", "", "the telescope's log `DIR` (with --netns: where it writes; without: kept)")
	fs.StringVar(&e.tag, "tag", lab.DemoTag, "the telescope's --tag")
	fs.StringVar(&e.bin, "bin", "", "spoki binary for the telescope this command starts (default: this one)")
	fs.Var(&e.prefixes, "prefix", "the telescope's prefix `CIDR` (repeatable; default the lab's)")
	fs.BoolVar(&e.verbose, "v", false, "show the telescope's output")
}

// telescope is the lab and telescope a command uses: its own or a running
// one.
type telescope struct {
	scannerNS string
	logDir    string
	prefixes  []netip.Prefix
	cleanup   func() error
}

// open builds a lab and starts `spoki run` in it, unless --netns names a
// running one.
func (e *scenarioEnv) open(ctx context.Context, out io.Writer, extra ...string) (*telescope, error) {
	tel := &telescope{logDir: e.logDir, cleanup: func() error { return nil }}
	if len(e.prefixes) == 0 {
		tel.prefixes = []netip.Prefix{lab.Prefix4, lab.Prefix6}
	}
	for _, s := range e.prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("scenario: bad --prefix %q: %w", s, err)
		}
		tel.prefixes = append(tel.prefixes, p.Masked())
	}
	if e.netns != "" {
		tel.scannerNS = e.netns
		return tel, nil
	}
	bin := e.bin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("scenario: find spoki binary: %w", err)
		}
		bin = exe
	}
	if err := tel.start(ctx, e, bin, out, extra); err != nil {
		return nil, errors.Join(err, tel.cleanup())
	}
	return tel, nil
}

// start makes the log directory, builds the lab and starts bin's `spoki
// run` in it with the extra flags; tel.cleanup undoes what it did.
func (tel *telescope) start(ctx context.Context, e *scenarioEnv, bin string, out io.Writer, extra []string) error {
	var undo []func() error
	tel.cleanup = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	if tel.logDir == "" {
		dir, err := os.MkdirTemp("", "spoki-scenario-")
		if err != nil {
			return fmt.Errorf("scenario: log dir: %w", err)
		}
		tel.logDir = dir
		undo = append(undo, func() error { return os.RemoveAll(dir) })
	} else if err := os.MkdirAll(tel.logDir, 0o755); err != nil {
		return fmt.Errorf("scenario: log dir: %w", err)
	}
	cfg := lab.Config{}
	if e.verbose {
		cfg.Output = out
	}
	l, err := lab.New(ctx, cfg)
	if err != nil {
		return err
	}
	undo = append(undo, l.Close)
	args := []string{"run", "--tun", l.TUN, "--log-dir", tel.logDir, "--tag", e.tag, "--stats-interval", "0"}
	for _, p := range tel.prefixes {
		args = append(args, "--prefix", p.String())
	}
	args = append(args, extra...)
	fmt.Fprintf(out, "# lab %s: telescope in %s (spoki %s), scanner in %s\n", l.Name, l.Telescope, strings.Join(args, " "), l.Scanner)
	p, err := l.Start(l.Telescope, bin, args...)
	if err != nil {
		return err
	}
	undo = append(undo, func() error {
		if err := p.Stop(); err != nil {
			return fmt.Errorf("scenario: telescope: %w", err)
		}
		return nil
	})
	if err := p.WaitForLine(lab.IsReadyLine, "ready", scenarioReadyTimeout); err != nil {
		return err
	}
	tel.scannerNS = l.Scanner
	return nil
}

// openWire prepares the scanner namespace for the sources and returns a
// runner on it; closing the runner undoes the set-up.
func (tel *telescope) openWire(sources, targets []netip.Addr, out io.Writer, events scenarios.EventSource) (*scenarios.Runner, error) {
	var w *scenarios.PacketWire
	err := lab.InNetns(tel.scannerNS, func() error {
		var err error
		w, err = scenarios.OpenWire(scenarios.WireConfig{Sources: sources, Targets: targets})
		return err
	})
	if err != nil {
		return nil, err
	}
	return scenarios.NewRunner(scenarios.Config{Wire: w, Events: events, Out: out, Prefixes: tel.prefixes}), nil
}

// scenarioRun runs `spoki scenario run`.
func scenarioRun(ctx context.Context, out io.Writer, args []string) (err error) {
	fs := flag.NewFlagSet("spoki scenario run", flag.ContinueOnError)
	var env scenarioEnv
	env.register(fs)
	builtin := fs.Bool("builtin", false, "run every built-in scenario (spoki scenario list)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 && !*builtin {
		return fmt.Errorf("scenario run: no scenario file\n%s", scenarioUsage)
	}
	// Parse everything first: a syntax error runs nothing.
	scripts, err := scenarioScripts(*builtin, fs.Args(), out)
	if err != nil {
		return err
	}
	extra, err := scenarioTelescopeFlags(scripts, env.netns != "", out)
	if err != nil {
		return err
	}
	sources, targets := scenarioAddrs(scripts)

	tel, err := env.open(ctx, out, extra...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.cleanup()) }()
	var events scenarios.EventSource
	if tel.logDir != "" {
		events = scenarios.LogDir{Dir: tel.logDir, Tag: env.tag}
	}
	r, err := tel.openWire(sources, targets, out, events)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()

	return scenarioRunAll(ctx, r, scripts, out)
}

// scenarioScripts parses the built-in scenarios (with builtin; those that
// need a telescope of their own are noted, not run) and the named files.
func scenarioScripts(builtin bool, names []string, out io.Writer) ([]*scenarios.Script, error) {
	var scripts []*scenarios.Script
	if builtin {
		for _, name := range scenarios.BuiltinNames() {
			s, err := scenarios.ParseFile(scenarios.Builtin(), name)
			if err != nil {
				return nil, err
			}
			if len(s.Telescope) > 0 {
				// It needs a telescope of its own: run it by name.
				fmt.Fprintf(out, "# not run: %s needs spoki run %s\n", name, strings.Join(s.Telescope, " "))
				continue
			}
			scripts = append(scripts, s)
		}
	}
	for _, name := range names {
		s, err := scenarios.ParsePath(name)
		if err != nil {
			return nil, err
		}
		scripts = append(scripts, s)
	}
	return scripts, nil
}

// scenarioRunAll runs the scripts on r and says which failed, counting a
// script that must fail and does (with its text) as passed.
func scenarioRunAll(ctx context.Context, r *scenarios.Runner, scripts []*scenarios.Script, out io.Writer) error {
	var failed []string
	for _, s := range scripts {
		rerr := r.Run(ctx, s)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case s.WantFail == "" && rerr != nil:
			failed = append(failed, s.Name)
		case s.WantFail != "" && rerr == nil:
			fmt.Fprintf(out, "--- XPASS %s: it must fail with %q\n", s.Name, s.WantFail)
			failed = append(failed, s.Name)
		case s.WantFail != "" && !strings.Contains(rerr.Error(), s.WantFail):
			fmt.Fprintf(out, "--- FAIL %s: it failed, but not with %q\n", s.Name, s.WantFail)
			failed = append(failed, s.Name)
		case s.WantFail != "":
			fmt.Fprintf(out, "--- XFAIL %s: failed as it must, with %q\n", s.Name, s.WantFail)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(out, "FAIL: %d of %d scenarios: %s\n", len(failed), len(scripts), strings.Join(failed, ", "))
		return fmt.Errorf("%w: %d of %d scenarios", scenarios.ErrFailed, len(failed), len(scripts))
	}
	fmt.Fprintf(out, "PASS: %d scenarios\n", len(scripts))
	return nil
}

// scenarioTelescopeFlags returns the `spoki run` flags the scripts need
// (their `// telescope:` comments): they must agree, since one telescope
// runs them all. With a running telescope (running), which this command
// cannot change, it only notes them.
func scenarioTelescopeFlags(scripts []*scenarios.Script, running bool, out io.Writer) ([]string, error) {
	var flags []string
	var from string
	for _, s := range scripts {
		switch {
		case running && len(s.Telescope) > 0:
			fmt.Fprintf(out, "# %s needs a telescope started with %s\n", s.Name, strings.Join(s.Telescope, " "))
		case from == "":
			flags, from = s.Telescope, s.Name
		case !slices.Equal(flags, s.Telescope):
			return nil, fmt.Errorf("scenario run: %s and %s need different telescopes (%q, %q): run them separately",
				from, s.Name, strings.Join(flags, " "), strings.Join(s.Telescope, " "))
		}
	}
	if running {
		return nil, nil
	}
	return flags, nil
}

// scenarioAddrs collects the source addresses and one target per family
// that the scripts use.
func scenarioAddrs(scripts []*scenarios.Script) (sources, targets []netip.Addr) {
	seenSrc := map[netip.Addr]bool{}
	seenFamily := map[bool]bool{}
	for _, s := range scripts {
		for _, f := range s.Flows {
			v4 := f.Dst.Addr().Is4()
			src := s.Src4
			if !v4 {
				src = s.Src6
			}
			if !seenSrc[src] {
				seenSrc[src] = true
				sources = append(sources, src)
			}
			if !seenFamily[v4] {
				seenFamily[v4] = true
				targets = append(targets, f.Dst.Addr())
			}
		}
	}
	return sources, targets
}

// scenarioReplay runs `spoki scenario replay`.
func scenarioReplay(ctx context.Context, out io.Writer, args []string) (err error) {
	fs := flag.NewFlagSet("spoki scenario replay", flag.ContinueOnError)
	var env scenarioEnv
	env.register(fs)
	src4 := fs.String("src4", "192.0.2.100", "IPv4 `ADDR` the client side is sent from (added to the scanner for the run)")
	src6 := fs.String("src6", "2001:db8:1::100", "IPv6 `ADDR` the client side is sent from")
	maxGap := fs.Duration("max-gap", scenarios.DefaultMaxGap, "longest pause between two packets")
	maxPackets := fs.Int("max-packets", scenarios.DefaultMaxPackets, "most packets to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("scenario replay: want one PCAP file\n%s", scenarioUsage)
	}
	cfg := scenarios.ReplayConfig{MaxGap: *maxGap, MaxPackets: *maxPackets}
	if cfg.Src4, err = netip.ParseAddr(*src4); err != nil || !cfg.Src4.Is4() {
		return fmt.Errorf("scenario replay: bad --src4 %q", *src4)
	}
	if cfg.Src6, err = netip.ParseAddr(*src6); err != nil || !cfg.Src6.Is6() {
		return fmt.Errorf("scenario replay: bad --src6 %q", *src6)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("scenario replay: %w", err)
	}
	defer f.Close()
	tel, err := env.open(ctx, out)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.cleanup()) }()
	cfg.Prefixes = tel.prefixes
	// One target and one source per family of the prefixes.
	var sources, targets []netip.Addr
	seen := map[bool]bool{}
	for _, p := range tel.prefixes {
		v4 := p.Addr().Is4()
		if seen[v4] {
			continue
		}
		seen[v4] = true
		targets = append(targets, p.Addr().Next())
		if v4 {
			sources = append(sources, cfg.Src4)
		} else {
			sources = append(sources, cfg.Src6)
		}
	}
	r, err := tel.openWire(sources, targets, out, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	fmt.Fprintf(out, "=== REPLAY %s\n", fs.Arg(0))
	return r.Replay(ctx, f, cfg)
}
