package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spoki-telescope/spoki/lab"
)

// probeUsage is printed for `spoki probe` without a valid subcommand.
const probeUsage = `usage: spoki probe http URL
       spoki probe line ADDR:PORT TEXT
       spoki probe syn (--prefix CIDR ... --count N | --target ADDR:PORT ...) [--wait 5s] [--seed S]
       spoki probe flood --iface IF --prefix CIDR [--src CIDR] [--kind syn|ack|synack|rst]
                         [--irregular] [--port P] [--rate PPS] [--duration 10s] [--count N] [--dst-mac MAC]

The probes are the project's own clients; run them inside the lab's scanner
namespace: ip netns exec NS spoki probe ...`

// probeMain runs `spoki probe SUBCOMMAND ...`, writing results to standard
// output. It returns an error when the probe could not do its job (and, for
// syn, when a target did not get exactly one SYN-ACK).
func probeMain(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("probe", "probe: missing subcommand: want http, line, syn or flood")
	}
	out := os.Stdout
	switch sub, rest := args[0], args[1:]; sub {
	case "http":
		return probeHTTP(ctx, out, rest)
	case "line":
		return probeLine(ctx, out, rest)
	case "syn":
		return probeSYN(ctx, out, rest)
	case "flood":
		return probeFlood(ctx, out, rest)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, probeUsage)
		return flag.ErrHelp
	default:
		return usagef("probe", "probe: unknown subcommand %q: want http, line, syn or flood", sub)
	}
}

// probeHTTP runs `spoki probe http URL`.
func probeHTTP(ctx context.Context, out io.Writer, args []string) error {
	fs := newFlagSet("probe http", probeUsage)
	timeout := fs.Duration("timeout", lab.DefaultHTTPTimeout, "whole-request `TIMEOUT`")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("probe http", "probe http: want one URL")
	}
	res, err := lab.ProbeHTTP(ctx, fs.Arg(0), *timeout)
	// The status line is the server's.
	fmt.Fprintf(out, "%s: %s\n", termSafe(fs.Arg(0)), termSafe(res.String()))
	return err
}

// probeLine runs `spoki probe line ADDR:PORT TEXT`.
func probeLine(ctx context.Context, out io.Writer, args []string) error {
	fs := newFlagSet("probe line", probeUsage)
	wait := fs.Duration("wait", lab.DefaultLineReadTimeout, "how long to read the answer (`DURATION`)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("probe line", "probe line: want ADDR:PORT and TEXT")
	}
	addr, text := fs.Arg(0), strings.Join(fs.Args()[1:], " ")
	res, err := lab.ProbeLine(ctx, addr, text, *wait)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: sent %q; %s\n", addr, text+"\r\n", res)
	return nil
}

// probeSYN runs `spoki probe syn`.
func probeSYN(ctx context.Context, out io.Writer, args []string) error {
	fs := newFlagSet("probe syn", probeUsage)
	var cfg lab.SYNConfig
	fs.Func("prefix", "`CIDR` to draw random targets from (repeatable)", func(s string) error {
		p, err := netip.ParsePrefix(s)
		cfg.Prefixes = append(cfg.Prefixes, p)
		return err
	})
	fs.Func("target", "`ADDR:PORT` to probe (repeatable; replaces --prefix/--count)", func(s string) error {
		ap, err := netip.ParseAddrPort(s)
		cfg.Targets = append(cfg.Targets, ap)
		return err
	})
	fs.IntVar(&cfg.Count, "count", 0, "number `N` of random targets")
	fs.DurationVar(&cfg.Wait, "wait", lab.DefaultSYNWait, "listening time after the last SYN")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random `SEED` (0: random)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || (len(cfg.Targets) == 0 && (len(cfg.Prefixes) == 0 || cfg.Count <= 0)) {
		return usagef("probe syn", "probe syn: want --prefix and --count, or --target")
	}
	results, err := lab.ProbeSYN(ctx, cfg)
	bad := 0
	for _, r := range results {
		fmt.Fprintln(out, r)
		if !r.OK() {
			bad++
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d targets, %d without exactly one correct SYN-ACK\n", len(results), bad)
	if bad > 0 {
		return fmt.Errorf("probe syn: %d of %d targets: %w", bad, len(results), lab.ErrSYNMismatch)
	}
	return nil
}

// probeFlood runs `spoki probe flood`.
func probeFlood(ctx context.Context, out io.Writer, args []string) error {
	fs := newFlagSet("probe flood", probeUsage)
	var cfg lab.FloodConfig
	fs.StringVar(&cfg.Iface, "iface", "", "interface `NAME` to send on (required)")
	fs.Func("prefix", "destination `CIDR` (required)", func(s string) (err error) {
		cfg.Prefix, err = netip.ParsePrefix(s)
		return err
	})
	fs.Func("src", "spoofed source `CIDR` (default 203.0.113.0/24 or 2001:db8:3::/64)", func(s string) (err error) {
		cfg.Src, err = netip.ParsePrefix(s)
		return err
	})
	fs.Func("kind", "packet `KIND`: syn, ack, synack or rst (default syn)", func(s string) (err error) {
		cfg.Kind, err = lab.ParseFloodKind(s)
		return err
	})
	fs.Func("dst-mac", "destination `MAC` (default: the gateway's neighbour entry)", func(s string) (err error) {
		cfg.DstMAC, err = net.ParseMAC(s)
		return err
	})
	fs.BoolVar(&cfg.Irregular, "irregular", false, "irregular SYNs as ZMap sends them: no options, TTL 255, IP ID 54321 (kind syn only)")
	fs.Func("port", "every frame's destination `PORT` (default: random 1-65535)", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("bad port %q", s)
		}
		cfg.Port = uint16(n)
		return nil
	})
	fs.IntVar(&cfg.Rate, "rate", 0, "packets per second, `PPS` (0: as fast as possible)")
	fs.DurationVar(&cfg.Duration, "duration", lab.DefaultFloodDuration, "flood length (at most 60s)")
	fs.Uint64Var(&cfg.Count, "count", 0, "stop after `N` packets (0: no limit)")
	fs.IntVar(&cfg.Batch, "batch", lab.DefaultFloodBatch, "frames per sendmmsg")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random `SEED` (0: random)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || cfg.Iface == "" || !cfg.Prefix.IsValid() {
		return usagef("probe flood", "probe flood: want --iface and --prefix")
	}
	if cfg.Duration > lab.MaxFloodDuration {
		fmt.Fprintf(os.Stderr, "probe flood: duration cut to %v\n", lab.MaxFloodDuration)
	}
	fmt.Fprintf(out, "flooding %s\n", cfg)
	res, err := lab.Flood(ctx, cfg)
	fmt.Fprintln(out, res)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
