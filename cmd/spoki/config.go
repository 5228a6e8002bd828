package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spoki-telescope/spoki/config"
)

// The configuration's types under the names run has always used.
type (
	runConfig     = config.Run
	byteSize      = config.Size
	handlerConfig = config.Handler
)

// defaultRunConfig is config.Default with the stats interval of where the
// log goes: a line a second for a person at a terminal, a line a minute
// for a journal or a file.
func defaultRunConfig() runConfig {
	c := config.Default()
	if !isTerminal(os.Stderr) {
		c.StatsInterval = statsIntervalJournal
	}
	return c
}

// statsIntervalJournal is the stats interval when stderr is not a
// terminal.
const statsIntervalJournal = time.Minute

// configSynopsis heads the help of `spoki config check`.
const configSynopsis = `usage: spoki config check FILE

Prints every problem of a spoki run config file (YAML, the keys of spoki
run's flags) as FILE:LINE: MESSAGE; exits 1 if there is one.`

// configMain is `spoki config check FILE`: it prints every problem of the
// file as FILE:LINE: MESSAGE and fails if there is one.
func configMain(_ context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("config", "config: missing subcommand: want check")
	}
	if isHelp(args[0]) {
		fmt.Fprintln(stdout, configSynopsis)
		return flag.ErrHelp
	}
	if args[0] != "check" {
		return usagef("config", "config: unknown subcommand %q: want check", args[0])
	}
	fs := newFlagSet("config check", configSynopsis)
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("config check", "config check: want one FILE")
	}
	path := fs.Arg(0)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config check: %w", err)
	}
	cfg := config.Default()
	probs := config.Check(data, &cfg, true)
	for _, p := range probs {
		if p.Line == 0 {
			fmt.Printf("%s: %s\n", path, p.Msg)
		} else {
			fmt.Printf("%s:%d: %s\n", path, p.Line, p.Msg)
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("config check: %d problem(s) in %s", len(probs), path)
	}
	fmt.Printf("%s: ok\n", path)
	return nil
}
