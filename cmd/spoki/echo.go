package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/tun"
	"github.com/spoki-telescope/spoki/tun/tunecho"
)

// echoMain is `spoki echo`: the benchmark's ceiling (package tunecho).
func echoMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("spoki echo", flag.ContinueOnError)
	var prefixes prefixList
	fs.Var(&prefixes, "prefix", "prefix `CIDR` routed to the TUN (repeatable)")
	name := fs.String("tun", "spkecho0", "TUN device `NAME`")
	queues := fs.Int("queues", 1, "TUN queues, one reader each (locked to its thread)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var ps []netip.Prefix
	for _, s := range prefixes {
		p, err := tun.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return errors.New("echo: at least one --prefix is required")
	}
	dev, err := tun.Open(tun.Config{Name: *name, Queues: *queues, Prefixes: ps})
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer dev.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := tunecho.Start(dev.FDs())
	fmt.Fprintln(os.Stderr, "echo ready")
	start := time.Now()
	<-ctx.Done()
	sent, other := e.Stop()
	fmt.Printf("echo: synacks=%d other=%d seconds=%.1f\n", sent, other, time.Since(start).Seconds())
	return nil
}
