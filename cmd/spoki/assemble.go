package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/analysis/assemble"
)

const assembleUsage = `usage: spoki assemble --start 2021-10-13T21 --tag TAG [--phase-timeout 600s]
                      [--probe-timeout 5m] [--out DIR] [--flush-at-eof] [--follow] LOGDIR

Assembles Spoki's raw and scamper logs into two-phase records, as Spoki's
assemble does, into TAG-events-YYYYMMDD-HHMMSS.json.gz files in --out.`

// assembleMain is `spoki assemble`.
func assembleMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("assemble", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), assembleUsage)
		fs.PrintDefaults()
	}
	start := fs.String("start", "", "first hour, UTC: YYYY-MM-DDTHH or YYYY-MM-DD (required)")
	tag := fs.String("tag", "", "datasource tag of the log file names (required)")
	phase := fs.Duration("phase-timeout", 600*time.Second, "largest delay between the two phases")
	probe := fs.Duration("probe-timeout", 5*time.Minute, "largest delay between a packet and its probe's confirmation")
	out := fs.String("out", ".", "output directory")
	flush := fs.Bool("flush-at-eof", false, "also write the batches that Spoki's assemble never writes")
	follow := fs.Bool("follow", false, "tail a live log directory until SIGINT/SIGTERM")
	poll := fs.Duration("poll", 5*time.Second, "poll interval with --follow")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("assemble: want exactly one LOGDIR")
	}
	if *tag == "" || *start == "" {
		fs.Usage()
		return errors.New("assemble: --start and --tag are required")
	}
	st, err := parseStartHour(*start)
	if err != nil {
		return err
	}
	if *phase <= 0 || *probe < 0 {
		return errors.New("assemble: timeouts must be positive")
	}
	lvl, err := parseLevel(*level)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("assemble: output dir: %w", err)
	}
	log := newLogger(lvl).With("component", "assemble")
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sink := &assemble.FileSink{Dir: *out, Tag: *tag}
	var stats assemble.Stats
	err = assemble.Run(ctx, assemble.Config{
		Dir: pos[0], Tag: *tag, Start: st, PhaseTimeout: *phase, ProbeTimeout: *probe,
		FlushAtEOF: *flush, Follow: *follow, Poll: *poll, Logger: log,
	}, sink, &stats)
	log.LogAttrs(context.Background(), slog.LevelInfo, "done",
		slog.Uint64("rows", stats.Rows), slog.Uint64("confirmations", stats.Confirmations),
		slog.Uint64("records", stats.Records), slog.Uint64("batches", stats.Batches),
		slog.Uint64("skipped_rows", stats.RowsMissingColumn+stats.RowsBadValue),
		slog.Uint64("unflushed", stats.Unflushed), slog.Int("files", len(sink.Written)))
	for _, f := range sink.Written {
		fmt.Println(f)
	}
	return err
}

// parseStartHour accepts YYYY-MM-DDTHH, YYYY-MM-DD (hour 0) and RFC 3339
// on the hour, all in UTC unless an offset is given.
func parseStartHour(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15", "2006-01-02", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if !t.Truncate(time.Hour).Equal(t) {
				return time.Time{}, fmt.Errorf("assemble: --start %q is not on the hour", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("assemble: --start %q: want YYYY-MM-DDTHH", s)
}

// parseInterleaved parses flags that may follow the positional arguments,
// as users of the original (click) are used to.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
