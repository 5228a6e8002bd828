package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/spoki-telescope/spoki/config"
)

// The configuration's types under the names run has always used.
type (
	runConfig     = config.Run
	byteSize      = config.Size
	handlerConfig = config.Handler
)

func defaultRunConfig() runConfig { return config.Default() }

// configMain is `spoki config check FILE`: it prints every problem of the
// file as FILE:LINE: MESSAGE and fails if there is one.
func configMain(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Println("usage: spoki config check FILE\n\nprints every problem of a `spoki run` config file with its line; exits 1 if there is one")
			return flag.ErrHelp
		}
		return errors.New("config: usage: spoki config check FILE")
	}
	fs := flag.NewFlagSet("spoki config check", flag.ContinueOnError)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("config check: want one FILE")
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
