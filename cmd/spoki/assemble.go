package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/analysis/assemble"
	"github.com/spoki-telescope/spoki/config"
)

const assembleUsage = `usage: spoki assemble --start 2021-10-13T21 --tag TAG [--phase-timeout 600s]
                      [--probe-timeout 5m] [--out DIR] [--flush-at-eof] [--follow]
                      [--kafka BROKERS [--kafka-topic TOPIC]] LOGDIR

Assembles Spoki's raw and scamper logs into two-phase records, as Spoki's
assemble does, into TAG-events-YYYYMMDD-HHMMSS.json.gz files in --out, and
with --kafka also one message per record to Kafka. On a terminal a progress
line shows the files, rows/s, the hour being read and the time left.`

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
	kafka := fs.String("kafka", "", "also publish every record to these Kafka brokers (host:port,...)")
	kafkaTopic := fs.String("kafka-topic", "", "topic of --kafka (default cse2.malware.events.TAG, as the original)")
	kafkaTimeout := fs.Duration("kafka-timeout", assemble.DefaultKafkaTimeout, "longest wait for the brokers to take a record before the run fails (at least 1s)")
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
	lvl, err := config.ParseLevel(*level)
	if err != nil {
		return err
	}
	if *kafkaTopic != "" && *kafka == "" {
		return errors.New("assemble: --kafka-topic needs --kafka")
	}
	if *kafkaTimeout < time.Second {
		return errors.New("assemble: --kafka-timeout must be at least 1s")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("assemble: output dir: %w", err)
	}
	var status *statusLine
	var log *slog.Logger
	if width, ok := terminalWidth(os.Stderr); ok {
		// The log lines go through the status line, which clears itself
		// for each and draws itself again below it.
		status = &statusLine{w: os.Stderr, width: width}
		log = slog.New(tint.NewHandler(status, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly}))
	} else {
		log = newLogger(lvl)
	}
	log = log.With("component", "assemble")
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	files := &assemble.FileSink{Dir: *out, Tag: *tag}
	var sink assemble.Sink = files
	var ks *assemble.KafkaSink
	if *kafka != "" {
		topic := *kafkaTopic
		if topic == "" {
			topic = assemble.KafkaTopic(*tag)
		}
		ks, err = assemble.NewKafkaSink(assemble.KafkaConfig{Brokers: downloadSplit(*kafka, ""), Topic: topic, Timeout: *kafkaTimeout})
		if err != nil {
			return err
		}
		defer ks.Close()
		// Files first: a batch goes to Kafka once it is on disk.
		sink = assemble.Sinks{files, ks}
	}
	cfg := assemble.Config{
		Dir: pos[0], Tag: *tag, Start: st, PhaseTimeout: *phase, ProbeTimeout: *probe,
		FlushAtEOF: *flush, Follow: *follow, Poll: *poll, Logger: log,
	}
	if status != nil {
		began := time.Now()
		var last time.Time
		cfg.OnProgress = func(p assemble.Progress) {
			if now := time.Now(); p.Done || now.Sub(last) >= progressEvery {
				last = now
				status.Set(p.Line(now.Sub(began)))
			}
		}
	}
	var stats assemble.Stats
	err = assemble.Run(ctx, cfg, sink, &stats)
	if status != nil {
		status.Done()
	}
	attrs := []slog.Attr{slog.Uint64("rows", stats.Rows), slog.Uint64("confirmations", stats.Confirmations),
		slog.Uint64("records", stats.Records), slog.Uint64("batches", stats.Batches),
		slog.Uint64("skipped_rows", stats.RowsMissingColumn+stats.RowsBadValue),
		slog.Uint64("unflushed", stats.Unflushed), slog.Uint64("unflushed_records", stats.UnflushedRecords),
		slog.Int("files", len(files.Written))}
	if ks != nil {
		attrs = append(attrs, slog.Uint64("kafka_published", ks.Published()), slog.String("kafka_topic", ks.Topic()))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "done", attrs...)
	for _, f := range files.Written {
		fmt.Println(f)
	}
	return err
}

// progressEvery is how often the progress line is redrawn.
const progressEvery = 250 * time.Millisecond

// terminalWidth reports whether f is a terminal, and its width.
func terminalWidth(f *os.File) (int, bool) {
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return 0, false
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80, true
	}
	return int(ws.Col), true
}

// statusLine is a line at the bottom of a terminal that is redrawn in
// place; other output written through it (the log lines) appears above it.
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	line  string
	buf   []byte
}

// clearLine returns the cursor to the line's start and erases the line.
const clearLine = "\r\x1b[K"

// fit cuts line to one row of width columns (less one, so that the cursor
// stays on the row): a wrapped line could not be redrawn in place.
func fit(line string, width int) string {
	if width <= 1 {
		return ""
	}
	if r := []rune(line); len(r) > width-1 {
		return string(r[:width-1])
	}
	return line
}

// Set replaces the status line.
func (s *statusLine) Set(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.line = fit(line, s.width)
	s.buf = append(append(s.buf[:0], clearLine...), s.line...)
	s.w.Write(s.buf)
}

// Write writes p above the status line.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line == "" {
		return s.w.Write(p)
	}
	s.buf = append(append(append(s.buf[:0], clearLine...), p...), s.line...)
	if _, err := s.w.Write(s.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Done erases the status line: the summary follows as a log line.
func (s *statusLine) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		io.WriteString(s.w, clearLine)
		s.line = ""
	}
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
