package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spoki-telescope/spoki/lab"
)

// labUsage is printed for `spoki lab` with a bad subcommand.
const labUsage = `usage: spoki lab [up] [--keep] [--log-dir DIR] [--threaded-napi=false]
       spoki lab demo [--keep-logs DIR]

up (the default) builds the lab, starts spoki in it and waits for Ctrl-C;
demo runs the probes end to end, prints the event log and checks it.
Both need root and remove everything they create.`

// labMain runs `spoki lab [up|demo] ...`. SIGINT and SIGTERM end it
// cleanly: the lab is removed before it returns.
func labMain(ctx context.Context, args []string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sub := "up"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "up":
		fs := newFlagSet("lab up", labUsage)
		var cfg lab.UpConfig
		fs.BoolVar(&cfg.Keep, "keep", false, "keep the temporary log directory")
		fs.StringVar(&cfg.LogDir, "log-dir", "", "spoki's log `DIR`, kept (default: a temporary one)")
		fs.BoolVar(&cfg.ThreadedNAPI, "threaded-napi", true, "run the telescope host's receive work on its uplink in a NAPI kernel thread (README \"Host settings\"; false: kernel defaults)")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usagef("lab up", "lab up: unexpected arguments %q", fs.Args())
		}
		return lab.Up(ctx, cfg)
	case "demo":
		fs := newFlagSet("lab demo", labUsage)
		var cfg lab.DemoConfig
		fs.StringVar(&cfg.KeepLogs, "keep-logs", "", "write spoki's logs to `DIR` and keep them")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usagef("lab demo", "lab demo: unexpected arguments %q", fs.Args())
		}
		return lab.Demo(ctx, cfg)
	case "help":
		fmt.Fprintln(stdout, labUsage)
		return flag.ErrHelp
	default:
		return usagef("lab", "lab: unknown subcommand %q: want up or demo", sub)
	}
}
