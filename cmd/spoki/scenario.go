package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/scenarios"
	"github.com/spoki-telescope/spoki/scenarios/labrun"
)

// scenarioUsage is printed for `spoki scenario` without a valid subcommand.
const scenarioUsage = `usage: spoki scenario run [flags] FILE... | --builtin
       spoki scenario replay [flags] CAPTURE
       spoki scenario list

run runs packetdrill-like scenario files (scenarios/README.md) from the
lab's scanner host against a live telescope and prints a pass or fail line
per step; replay sends the client side of a capture (pcap or pcapng) into
the prefixes.
Without --netns they build their own lab and telescope and remove them at
the end; with --netns SCAN (and --log-dir DIR for the event checks) they
use a running one. Both need root.`

// scenarioMain runs `spoki scenario SUBCOMMAND ...`. It returns
// scenarios.ErrFailed (after the failures were printed) when a step or a
// replayed connection failed.
func scenarioMain(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		return usagef("scenario", "scenario: missing subcommand: want run, replay or list")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "run":
		return scenarioRun(ctx, os.Stdout, rest)
	case "replay":
		return scenarioReplay(ctx, os.Stdout, rest)
	case "list":
		fs := newFlagSet("scenario list", scenarioUsage)
		if err := parseArgs(fs, rest); err != nil {
			return err
		}
		for _, n := range scenarios.BuiltinNames() {
			fmt.Println(n)
		}
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, scenarioUsage)
		return flag.ErrHelp
	default:
		return usagef("scenario", "scenario: unknown subcommand %q: want run, replay or list", sub)
	}
}

// scenarioEnv are the flags run and replay share: where the telescope is.
type scenarioEnv labrun.Env

// register adds the shared flags to fs.
func (e *scenarioEnv) register(fs *flag.FlagSet) {
	fs.StringVar(&e.Netns, "netns", "", "scanner `NS` of a running lab (default: build a lab and a telescope)")
	fs.StringVar(&e.LogDir, "log-dir", "", "the telescope's log `DIR` (with --netns: where it writes; without: kept)")
	fs.StringVar(&e.Tag, "tag", lab.DemoTag, "the telescope's --tag `TAG`")
	fs.StringVar(&e.Bin, "bin", "", "spoki binary `FILE` for the telescope this command starts (default: this one)")
	fs.Var((*prefixList)(&e.Prefixes), "prefix", "the telescope's prefix `CIDR` (repeatable; default the lab's)")
	fs.BoolVar(&e.Verbose, "v", false, "show the telescope's output")
}

// scenarioRun runs `spoki scenario run`.
func scenarioRun(ctx context.Context, out io.Writer, args []string) error {
	fs := newFlagSet("scenario run", scenarioUsage)
	var env scenarioEnv
	env.register(fs)
	builtin := fs.Bool("builtin", false, "run every built-in scenario (spoki scenario list)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 && !*builtin {
		return usagef("scenario run", "scenario run: want a FILE (or --builtin)")
	}
	return labrun.Run(ctx, labrun.Env(env), out, *builtin, fs.Args())
}

// scenarioReplay runs `spoki scenario replay`.
func scenarioReplay(ctx context.Context, out io.Writer, args []string) (err error) {
	fs := newFlagSet("scenario replay", scenarioUsage)
	var env scenarioEnv
	env.register(fs)
	src4 := fs.String("src4", "192.0.2.100", "IPv4 `ADDR` the client side is sent from (added to the scanner for the run)")
	src6 := fs.String("src6", "2001:db8:1::100", "IPv6 `ADDR` the client side is sent from")
	maxGap := fs.Duration("max-gap", scenarios.DefaultMaxGap, "longest pause between two packets (`DURATION`)")
	maxPackets := fs.Int("max-packets", scenarios.DefaultMaxPackets, "most packets to send (`N`)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("scenario replay", "scenario replay: want one CAPTURE file (pcap or pcapng)")
	}
	cfg := scenarios.ReplayConfig{MaxGap: *maxGap, MaxPackets: *maxPackets}
	if cfg.Src4, err = netip.ParseAddr(*src4); err != nil || !cfg.Src4.Is4() {
		return usagef("scenario replay", "scenario replay: --src4 %q: want an IPv4 address", *src4)
	}
	if cfg.Src6, err = netip.ParseAddr(*src6); err != nil || !cfg.Src6.Is6() {
		return usagef("scenario replay", "scenario replay: --src6 %q: want an IPv6 address", *src6)
	}
	return labrun.Replay(ctx, labrun.Env(env), out, fs.Arg(0), cfg)
}
