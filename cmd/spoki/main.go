// Command spoki is a reactive network telescope: it answers every TCP SYN
// sent to the address space routed to it, statelessly, completes the
// handshakes that scanners come back for, and records what they send.
//
//	spoki run --prefix CIDR ...        the telescope
//	spoki lab [up|demo]                a lab of network namespaces with the telescope in it
//	spoki probe http|line|syn|flood    the lab's clients
//	spoki echo --prefix CIDR           a raw TUN SYN echo without a stack (the benchmark's baseline)
//	spoki scenario run|replay|list     packetdrill-like scenarios against the lab's telescope
//	spoki assemble ... LOGDIR          Spoki's event assembly over raw and reply logs, offline
//	spoki urls [PAYLOAD ...]           downloader URLs in payloads
//	spoki download ...                 fetch the files behind downloader URLs (never run them)
//	spoki report ...                   top ports, contact types and phase delays, as text and HTML
//	spoki config check FILE            check a run config file
//	spoki twophase --kafka B --group G two-phase scans across telescopes, from their Kafka syn topics
//	spoki completion bash|zsh          a shell completion script
//	spoki version                      version, commit, build date and Go version
//
// `spoki help COMMAND` (or `spoki COMMAND --help`) shows a command's flags.
// Usage mistakes exit 2, failures 1. See README.md for the files it writes
// and how to route a prefix to it, and docs/ for the design notes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spoki-telescope/spoki/internal/version"
)

// command is one entry of the command table: the top-level usage, `spoki
// help`, the dispatch and the completion scripts are all made from it.
type command struct {
	name, summary string
	// main runs the command with the arguments after its name.
	main func(ctx context.Context, args []string) error
	// subs are the subcommands (lab, probe, scenario, config), for help
	// and completion; main dispatches them.
	subs []string
	// noFlags: the command has no flag set to show (help prints its
	// usage text).
	noFlags bool
}

// commands is the command table, in the order the usage lists them.
var commands []command

func init() {
	// Set here, not in the declaration: help and completion refer back to
	// the table.
	commands = []command{
		{name: "run", summary: "run the telescope (spoki run --prefix CIDR ...)", main: runMain},
		{name: "lab", summary: "build the lab of two network namespaces and run the telescope in it", main: labMain, subs: []string{"up", "demo"}},
		{name: "probe", summary: "the lab's clients: http, line, syn, flood", main: probeMain, subs: []string{"http", "line", "syn", "flood"}},
		{name: "echo", summary: "a raw TUN SYN echo without a stack (benchmark ceiling)", main: echoMain},
		{name: "scenario", summary: "run, replay or list packetdrill-like scenarios against the lab's telescope", main: scenarioMain, subs: []string{"run", "replay", "list"}},
		{name: "assemble", summary: "Spoki's event assembly over raw and reply logs, offline", main: assembleMain},
		{name: "urls", summary: "downloader URLs in payloads", main: urlsMain},
		{name: "download", summary: "fetch the files behind downloader URLs (never run them)", main: downloadMain},
		{name: "report", summary: "top ports, contact types and phase delays, as text and HTML", main: reportMain},
		{name: "twophase", summary: "two-phase scans across telescopes, from Kafka (spoki twophase --kafka BROKERS --group NAME)", main: twophaseMain},
		{name: "config", summary: "check a run config file (spoki config check FILE)", main: configMain, subs: []string{"check"}},
		{name: "completion", summary: "print a bash or zsh completion script (spoki completion bash)", main: completionMain, subs: []string{"bash", "zsh"}, noFlags: true},
		{name: "version", summary: "print the version, commit, build date and Go version (also --version)", main: versionMain, noFlags: true},
		{name: "help", summary: "show the help of a command (spoki help run)", main: helpMain, noFlags: true},
	}
}

// lookup returns the command named name.
func lookup(name string) (*command, bool) {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i], true
		}
	}
	return nil, false
}

// usage is the top-level help.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: spoki COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\n'spoki help COMMAND' or 'spoki COMMAND --help' shows a command's flags.\n" +
		"Usage mistakes exit 2, failures 1.")
	return b.String()
}

func main() {
	os.Exit(realMain(os.Args[1:]))
}

// realMain runs spoki with args and returns the exit code: 0, 2 for a
// usage mistake, 1 for a failure. Errors go to stderr as one line naming
// the command once; a usage mistake also says where the help is.
func realMain(args []string) int {
	return runCommand(context.Background(), os.Stderr, args)
}

// runCommand is realMain writing its errors to stderr.
func runCommand(ctx context.Context, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage())
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage())
		return 0
	case "--version", "-version":
		name = "version"
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "spoki: unknown command %q (see 'spoki help')\n", name)
		return 2
	}
	err := c.main(ctx, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, name+":") && !strings.HasPrefix(msg, name+" ") {
		msg = name + ": " + msg
	}
	var ue *usageError
	if errors.As(err, &ue) {
		cmd := ue.cmd
		if cmd == "" {
			cmd = name
		}
		fmt.Fprintf(stderr, "spoki %s (see 'spoki help %s')\n", msg, cmd)
		return 2
	}
	fmt.Fprintf(stderr, "spoki %s\n", msg)
	return 1
}

// helpMain is `spoki help [COMMAND [SUBCOMMAND]]`: the command's own
// --help.
func helpMain(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(stdout, usage())
		return nil
	}
	c, ok := lookup(args[0])
	if !ok && !isHelp(args[0]) {
		return usagef("help", "help: unknown command %q", args[0])
	}
	if !ok || c.name == "help" {
		fmt.Fprintln(stdout, "usage: spoki help [COMMAND [SUBCOMMAND]]\n\nshows the help of a command; the same as spoki COMMAND --help.")
		return nil
	}
	rest := []string{"--help"}
	if len(args) > 1 {
		rest = []string{args[1], "--help"}
	}
	err := c.main(ctx, rest)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// versionMain prints what the binary was built from (internal/version):
// the module version, the commit, its time and the Go version.
func versionMain(_ context.Context, args []string) error {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprintln(stdout, versionSynopsis)
		return flag.ErrHelp
	}
	if len(args) > 0 {
		return usagef("version", "version: takes no arguments")
	}
	fmt.Fprint(stdout, version.Get())
	return nil
}

// versionSynopsis is the help of `spoki version`.
const versionSynopsis = `usage: spoki version
       spoki --version

Prints the module version, the commit it was built from (and whether the
tree had changes), the commit's time and the Go version.`
