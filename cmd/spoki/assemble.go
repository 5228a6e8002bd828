package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lmittmann/tint"

	"github.com/spoki-telescope/spoki/analysis/assemble"
	"github.com/spoki-telescope/spoki/analysis/download"
	"github.com/spoki-telescope/spoki/config"
)

const assembleUsage = `usage: spoki assemble --start 2021-10-13T21 --tag TAG [--phase-timeout 600s]
                      [--probe-timeout 5m] [--out DIR] [--flush-at-eof] [--follow]
                      [--kafka BROKERS [--kafka-topic TOPIC]] LOGDIR

Assembles Spoki's raw and scamper logs into two-phase records, as Spoki's
assemble does, into TAG-events-YYYYMMDD-HHMMSS.json.gz files in --out, and
with --kafka also one message per record to Kafka. On a terminal a progress
line shows the files, rows/s, the hour being read and the time left.`

// assembleOpts are the flags of `spoki assemble`.
type assembleOpts struct {
	start, tag, out, level, kafka, kafkaTopic string
	phase, probe, poll, kafkaTimeout          time.Duration
	flush, follow                             bool
}

// assembleFlags defines the flags of `spoki assemble` on o.
func assembleFlags(o *assembleOpts) *flag.FlagSet {
	fs := newFlagSet("assemble", assembleUsage)
	fs.StringVar(&o.start, "start", "", "first `HOUR`, UTC: YYYY-MM-DDTHH or YYYY-MM-DD (required)")
	fs.StringVar(&o.tag, "tag", "", "datasource `TAG` of the log file names (required)")
	fs.DurationVar(&o.phase, "phase-timeout", 600*time.Second, "largest delay between the two phases")
	fs.DurationVar(&o.probe, "probe-timeout", 5*time.Minute, "largest delay between a packet and its probe's confirmation")
	fs.StringVar(&o.out, "out", ".", "output `DIR`")
	fs.BoolVar(&o.flush, "flush-at-eof", false, "also write the batches that Spoki's assemble never writes")
	fs.BoolVar(&o.follow, "follow", false, "tail a live log directory until SIGINT/SIGTERM")
	fs.DurationVar(&o.poll, "poll", 5*time.Second, "poll interval with --follow")
	fs.StringVar(&o.level, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	fs.StringVar(&o.kafka, "kafka", "", "also publish every record to these Kafka `BROKERS` (host:port,...)")
	fs.StringVar(&o.kafkaTopic, "kafka-topic", "", "`TOPIC` of --kafka (default cse2.malware.events.TAG, as the original)")
	fs.DurationVar(&o.kafkaTimeout, "kafka-timeout", assemble.DefaultKafkaTimeout, "longest wait for the brokers to take a record before the run fails (at least 1s)")
	return fs
}

// check checks the flags and the LOGDIR, and returns the first hour and
// the log level.
func (o *assembleOpts) check(fs *flag.FlagSet, pos []string) (time.Time, slog.Level, error) {
	if len(pos) != 1 {
		return time.Time{}, 0, usagef("assemble", "assemble: want exactly one LOGDIR")
	}
	if o.tag == "" || o.start == "" {
		return time.Time{}, 0, usagef("assemble", "assemble: --start and --tag are required")
	}
	st, err := assemble.ParseStartHour(o.start)
	if err != nil {
		return time.Time{}, 0, &usageError{cmd: "assemble", err: err}
	}
	if o.phase <= 0 || o.probe < 0 {
		return time.Time{}, 0, usagef("assemble", "assemble: timeouts must be positive")
	}
	lvl, err := config.ParseLevel(o.level)
	if err != nil {
		return time.Time{}, 0, &usageError{cmd: "assemble", err: fmt.Errorf("assemble: --log-level: %w", err)}
	}
	if o.kafkaTopic != "" && o.kafka == "" {
		return time.Time{}, 0, usagef("assemble", "assemble: --kafka-topic needs --kafka")
	}
	if o.kafkaTimeout < time.Second {
		return time.Time{}, 0, usagef("assemble", "assemble: --kafka-timeout must be at least 1s")
	}
	return st, lvl, nil
}

// assembleLogger logs through a status line on a terminal (nil otherwise):
// the log lines clear it for each and draw it again below.
func assembleLogger(lvl slog.Level) (*slog.Logger, *assemble.StatusLine) {
	var status *assemble.StatusLine
	var log *slog.Logger
	if width, ok := assemble.TerminalWidth(os.Stderr); ok {
		status = assemble.NewStatusLine(os.Stderr, width)
		log = slog.New(tint.NewHandler(status, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly}))
	} else {
		log = newLogger(lvl)
	}
	return log.With("component", "assemble"), status
}

// assembleMain is `spoki assemble`.
func assembleMain(ctx context.Context, args []string) error {
	var o assembleOpts
	fs := assembleFlags(&o)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	st, lvl, err := o.check(fs, pos)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("assemble: output dir: %w", err)
	}
	log, status := assembleLogger(lvl)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	files := &assemble.FileSink{Dir: o.out, Tag: o.tag}
	var sink assemble.Sink = files
	var ks *assemble.KafkaSink
	if o.kafka != "" {
		topic := o.kafkaTopic
		if topic == "" {
			topic = assemble.KafkaTopic(o.tag)
		}
		ks, err = assemble.NewKafkaSink(assemble.KafkaConfig{Brokers: download.SplitList(o.kafka, ""), Topic: topic, Timeout: o.kafkaTimeout})
		if err != nil {
			return err
		}
		defer ks.Close()
		// Files first: a batch goes to Kafka once it is on disk.
		sink = assemble.Sinks{files, ks}
	}
	cfg := assemble.Config{
		Dir: pos[0], Tag: o.tag, Start: st, PhaseTimeout: o.phase, ProbeTimeout: o.probe,
		FlushAtEOF: o.flush, Follow: o.follow, Poll: o.poll, Logger: log,
	}
	var stats assemble.Stats
	err = assemble.RunWithStatus(ctx, cfg, sink, &stats, status)
	log.LogAttrs(context.Background(), slog.LevelInfo, "done", assemble.DoneAttrs(&stats, files, ks)...)
	for _, f := range files.Written {
		fmt.Println(f)
	}
	return err
}
