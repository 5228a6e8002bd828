package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/tun"
	"github.com/spoki-telescope/spoki/tun/tunecho"
)

// echoSynopsis heads the help of `spoki echo`.
const echoSynopsis = `usage: spoki echo --prefix CIDR [--prefix CIDR ...] [--tun NAME] [--queues N] [--raw-replies]

Answers every SYN routed to a TUN device with a SYN-ACK, without a stack:
the ceiling the benchmark compares spoki with. Each SYN-ACK is written back
to the TUN, or with --raw-replies those of each read batch leave in one
sendmmsg on raw IP sockets, as spoki run sends its replies. It runs until
SIGINT or SIGTERM and prints what it sent.`

// echoMain is `spoki echo`: the benchmark's ceiling (package tunecho).
func echoMain(ctx context.Context, args []string) error {
	fs := newFlagSet("echo", echoSynopsis)
	var prefixes prefixList
	fs.Var(&prefixes, "prefix", "prefix `CIDR` routed to the TUN (repeatable)")
	name := fs.String("tun", "spkecho0", "TUN device `NAME`")
	queues := fs.Int("queues", 1, "TUN queues, one reader each (locked to its thread)")
	raw := fs.Bool("raw-replies", false, "send the SYN-ACKs of each read batch in one sendmmsg on raw IP sockets (needs CAP_NET_RAW), as spoki run does, instead of one TUN write each")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("echo", "echo: unexpected arguments %q", fs.Args())
	}
	var ps []netip.Prefix
	for _, s := range prefixes {
		p, err := tun.ParsePrefix(s)
		if err != nil {
			return &usageError{cmd: "echo", err: fmt.Errorf("echo: --prefix: %w", err)}
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return usagef("echo", "echo: at least one --prefix is required")
	}
	dev, err := tun.Open(tun.Config{Name: *name, Queues: *queues, Prefixes: ps, RawReplies: *raw})
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer dev.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var e *tunecho.Echo
	mode := "tun"
	if *raw {
		// A baseline that fell back to TUN writes would measure the
		// wrong thing: fail instead.
		if err := dev.RawReplies(); err != nil {
			return fmt.Errorf("echo: --raw-replies: %w", err)
		}
		e, mode = tunecho.StartBatched(dev.FDs(), dev.Queues()), "batched"
	} else {
		e = tunecho.Start(dev.FDs())
	}
	fmt.Fprintf(os.Stderr, "echo ready (replies %s)\n", mode)
	start := time.Now()
	<-ctx.Done()
	sent, other := e.Stop()
	fmt.Printf("echo: synacks=%d other=%d failed=%d seconds=%.1f\n", sent, other, e.Failed(), time.Since(start).Seconds())
	return nil
}
