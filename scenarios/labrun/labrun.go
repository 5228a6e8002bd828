// Package labrun runs scenarios (package scenarios) from a lab's scanner
// host against a telescope: a running one, or a lab and `spoki run` it
// builds for the run and removes at the end. It is what `spoki scenario
// run` and `spoki scenario replay` do once their flags are parsed.
package labrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/scenarios"
)

// ReadyTimeout bounds the start of the telescope a run starts.
const ReadyTimeout = 20 * time.Second

// Env says where the telescope is.
type Env struct {
	// Netns is the scanner namespace of a running lab; empty: build a lab
	// and a telescope.
	Netns string
	// LogDir is the telescope's log directory (with Netns: where it
	// writes; without: kept, instead of a temporary one).
	LogDir string
	// Tag is the telescope's --tag.
	Tag string
	// Bin is the spoki binary of the telescope a run starts (empty: this
	// executable).
	Bin string
	// Prefixes are the telescope's prefixes (empty: the lab's).
	Prefixes []string
	// Verbose shows the telescope's output.
	Verbose bool
}

// Telescope is the lab and telescope a run uses: its own or a running one.
type Telescope struct {
	// ScannerNS is the namespace the scenarios are sent from.
	ScannerNS string
	// LogDir is where the telescope writes its logs ("" if unknown).
	LogDir string
	// Prefixes are the telescope's prefixes.
	Prefixes []netip.Prefix
	cleanup  func() error
}

// Close removes what Open built (nothing for a running telescope).
func (tel *Telescope) Close() error { return tel.cleanup() }

// Open builds a lab and starts `spoki run` in it with the extra flags,
// unless e.Netns names a running one.
func (e Env) Open(ctx context.Context, out io.Writer, extra ...string) (*Telescope, error) {
	tel := &Telescope{LogDir: e.LogDir, cleanup: func() error { return nil }}
	if len(e.Prefixes) == 0 {
		tel.Prefixes = []netip.Prefix{lab.Prefix4, lab.Prefix6}
	}
	for _, s := range e.Prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("scenario: bad --prefix %q: %w", s, err)
		}
		tel.Prefixes = append(tel.Prefixes, p.Masked())
	}
	if e.Netns != "" {
		tel.ScannerNS = e.Netns
		return tel, nil
	}
	bin := e.Bin
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
func (tel *Telescope) start(ctx context.Context, e Env, bin string, out io.Writer, extra []string) error {
	var undo []func() error
	tel.cleanup = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	if tel.LogDir == "" {
		dir, err := os.MkdirTemp("", "spoki-scenario-")
		if err != nil {
			return fmt.Errorf("scenario: log dir: %w", err)
		}
		tel.LogDir = dir
		undo = append(undo, func() error { return os.RemoveAll(dir) })
	} else if err := os.MkdirAll(tel.LogDir, 0o755); err != nil {
		return fmt.Errorf("scenario: log dir: %w", err)
	}
	cfg := lab.Config{}
	if e.Verbose {
		cfg.Output = out
	}
	l, err := lab.New(ctx, cfg)
	if err != nil {
		return err
	}
	undo = append(undo, l.Close)
	args := []string{"run", "--tun", l.TUN, "--log-dir", tel.LogDir, "--tag", e.Tag, "--stats-interval", "0"}
	for _, p := range tel.Prefixes {
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
	if err := p.WaitForLine(lab.IsReadyLine, "ready", ReadyTimeout); err != nil {
		return err
	}
	tel.ScannerNS = l.Scanner
	return nil
}

// OpenWire prepares the scanner namespace for the sources and returns a
// runner on it; closing the runner undoes the set-up.
func (tel *Telescope) OpenWire(sources, targets []netip.Addr, out io.Writer, events scenarios.EventSource) (*scenarios.Runner, error) {
	var w *scenarios.PacketWire
	err := lab.InNetns(tel.ScannerNS, func() error {
		var err error
		w, err = scenarios.OpenWire(scenarios.WireConfig{Sources: sources, Targets: targets})
		return err
	})
	if err != nil {
		return nil, err
	}
	return scenarios.NewRunner(scenarios.Config{Wire: w, Events: events, Out: out, Prefixes: tel.Prefixes}), nil
}

// Scripts parses the built-in scenarios (with builtin; those that
// need a telescope of their own are noted, not run) and the named files.
func Scripts(builtin bool, names []string, out io.Writer) ([]*scenarios.Script, error) {
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

// RunAll runs the scripts on r and says which failed, counting a
// script that must fail and does (with its text) as passed.
func RunAll(ctx context.Context, r *scenarios.Runner, scripts []*scenarios.Script, out io.Writer) error {
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

// TelescopeFlags returns the `spoki run` flags the scripts need
// (their `// telescope:` comments): they must agree, since one telescope
// runs them all. With a running telescope (running), which this command
// cannot change, it only notes them.
func TelescopeFlags(scripts []*scenarios.Script, running bool, out io.Writer) ([]string, error) {
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

// Addrs collects the source addresses and one target per family
// that the scripts use.
func Addrs(scripts []*scenarios.Script) (sources, targets []netip.Addr) {
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

// Run parses the scripts (the built-in ones with builtin, then the named
// files), starts the telescope they need unless e names a running one,
// runs them from the scanner and says which failed (scenarios.ErrFailed).
func Run(ctx context.Context, e Env, out io.Writer, builtin bool, names []string) (err error) {
	// Parse everything first: a syntax error runs nothing.
	scripts, err := Scripts(builtin, names, out)
	if err != nil {
		return err
	}
	extra, err := TelescopeFlags(scripts, e.Netns != "", out)
	if err != nil {
		return err
	}
	sources, targets := Addrs(scripts)

	tel, err := e.Open(ctx, out, extra...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.Close()) }()
	var events scenarios.EventSource
	if tel.LogDir != "" {
		events = scenarios.LogDir{Dir: tel.LogDir, Tag: e.Tag}
	}
	r, err := tel.OpenWire(sources, targets, out, events)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()

	return RunAll(ctx, r, scripts, out)
}

// Replay sends the client side of the pcap capture at path into the
// telescope's prefixes from cfg's sources (cfg.Prefixes is set here).
func Replay(ctx context.Context, e Env, out io.Writer, path string, cfg scenarios.ReplayConfig) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("scenario replay: %w", err)
	}
	defer f.Close()
	tel, err := e.Open(ctx, out)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.Close()) }()
	cfg.Prefixes = tel.Prefixes
	sources, targets := replayAddrs(tel.Prefixes, cfg)
	r, err := tel.OpenWire(sources, targets, out, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	fmt.Fprintf(out, "=== REPLAY %s\n", path)
	return r.Replay(ctx, f, cfg)
}

// replayAddrs picks one target and one source per family of the prefixes.
func replayAddrs(prefixes []netip.Prefix, cfg scenarios.ReplayConfig) (sources, targets []netip.Addr) {
	seen := map[bool]bool{}
	for _, p := range prefixes {
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
	return sources, targets
}
