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
//	spoki twophase --kafka B --group G two-phase scans across telescopes, from their Kafka syn topics
//	spoki config check FILE            check a run config file
//
// `spoki COMMAND -h` shows a command's flags. See README.md for the files it
// writes and how to route a prefix to it, and docs/ for the design notes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
)

const usage = `usage: spoki COMMAND [flags]

commands:
  run      run the telescope (spoki run --prefix CIDR ...)
  lab      build the lab of two network namespaces and run the telescope in it
  probe    the lab's clients: http, line, syn, flood
  echo     a raw TUN SYN echo without a stack (benchmark ceiling)
  scenario run, replay or list packetdrill-like scenarios against the lab's telescope
  assemble Spoki's event assembly over raw and reply logs, offline
  urls     downloader URLs in payloads
  download fetch the files behind downloader URLs (never run them)
  report   top ports, contact types and phase delays, as text and HTML
  twophase two-phase scans across telescopes, from Kafka (spoki twophase --kafka BROKERS --group NAME)
  config   check a run config file (spoki config check FILE)

spoki COMMAND -h shows the flags of a command.`

func main() {
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	ctx := context.Background()
	var err error
	switch args[0] {
	case "run":
		err = runMain(ctx, args[1:])
	case "lab":
		err = labMain(ctx, args[1:])
	case "probe":
		err = probeMain(ctx, args[1:])
	case "echo":
		err = echoMain(ctx, args[1:])
	case "assemble":
		err = assembleMain(ctx, args[1:])
	case "urls":
		err = urlsMain(ctx, args[1:])
	case "scenario":
		err = scenarioMain(ctx, args[1:])
	case "download":
		err = downloadMain(ctx, args[1:])
	case "report":
		err = reportMain(ctx, args[1:])
	case "twophase":
		err = twophaseMain(ctx, args[1:])
	case "config":
		err = configMain(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "spoki: unknown command %q\n%s\n", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "spoki:", err)
		return 1
	}
	return 0
}
