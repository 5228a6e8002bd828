package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	tpkafka "github.com/spoki-telescope/spoki/analysis/twophase/kafka"
	"github.com/spoki-telescope/spoki/config"
	"github.com/spoki-telescope/spoki/records/kafkasink"
)

const twophaseUsage = `usage: spoki twophase --kafka BROKERS --group NAME [--kafka-topic-prefix P]
                      [--topics T1,T2,...] [--out-topic T] [--phase-timeout 600s]
                      [--phase-memory 32MiB] [--replay-slack 10s] [--stats-interval 10s]
                      [--kafka-tls ...] [--kafka-sasl ...]

Finds two-phase scans across telescopes: as a member of the consumer group
--group it reads the syn topics that spoki run --kafka publishes (every
Pspoki.TAG.syn, or --topics), keeps one two-phase table of --phase-memory
per partition it owns, and publishes a two_phase event per pair to
--out-topic (default Pspoki.twophase.two_phase), keyed by source, with the
telescope's host header. Run it on several machines with one group name and
they share the partitions; a member that takes a partition over rebuilds
its window from the topic first. The TLS and SASL flags are spoki run's.
`

// twophaseMain runs one member of the group until SIGINT or SIGTERM.
func twophaseMain(ctx context.Context, args []string) error {
	fs := newFlagSet("twophase", strings.TrimSuffix(twophaseUsage, "\n"))
	var (
		brokers, group, prefix, topics, outTopic, level string
		timeout, slack, statsEvery                      time.Duration
		memory                                          = config.Size(twophase.DefaultMemory)
		auth                                            config.Run
	)
	fs.StringVar(&brokers, "kafka", "", "Kafka `BROKERS` (host:port,...)")
	fs.StringVar(&group, "group", "", "consumer group `NAME` shared by the members")
	fs.StringVar(&prefix, "kafka-topic-prefix", "", "the telescopes' topic prefix `P`")
	fs.StringVar(&topics, "topics", "", "syn `TOPICS` to read (comma-separated; default every Pspoki.TAG.syn)")
	fs.StringVar(&outTopic, "out-topic", "", "`TOPIC` of the two_phase events (default Pspoki.twophase.two_phase)")
	fs.DurationVar(&timeout, "phase-timeout", twophase.DefaultTimeout, "longest delay between the phases")
	fs.Var(&memory, "phase-memory", "memory `SIZE` of each partition's table (32 bytes a phase one)")
	fs.DurationVar(&slack, "replay-slack", tpkafka.DefaultReplaySlack, "extra packet time replayed before the window on a rebalance")
	fs.DurationVar(&statsEvery, "stats-interval", 10*time.Second, "log the counters every `D` (0 = only at the end)")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn, error")
	fs.BoolVar(&auth.KafkaTLS, "kafka-tls", false, "connect over TLS")
	fs.StringVar(&auth.KafkaTLSCA, "kafka-tls-ca", "", "PEM `FILE` of the brokers' CAs")
	fs.StringVar(&auth.KafkaTLSCert, "kafka-tls-cert", "", "PEM `FILE` of the client certificate")
	fs.StringVar(&auth.KafkaTLSKey, "kafka-tls-key", "", "PEM `FILE` of its key")
	fs.StringVar(&auth.KafkaTLSServerName, "kafka-tls-server-name", "", "`NAME` the brokers' certificates carry")
	fs.BoolVar(&auth.KafkaTLSInsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "accept any broker certificate (labs only)")
	fs.StringVar(&auth.KafkaSASL, "kafka-sasl", "", "SASL `MECHANISM`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
	fs.StringVar(&auth.KafkaSASLUser, "kafka-sasl-user", "", "SASL `USER`")
	fs.StringVar(&auth.KafkaSASLPasswordFile, "kafka-sasl-password-file", "", "`FILE` with the SASL password")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("twophase", "twophase: unexpected argument %q", fs.Arg(0))
	}
	if brokers == "" || group == "" {
		return usagef("twophase", "twophase: --kafka and --group are required")
	}
	if timeout <= 0 {
		return usagef("twophase", "twophase: --phase-timeout must be positive")
	}
	if err := config.CheckPhaseMemory(memory); err != nil {
		return usagef("twophase", "twophase: --phase-memory %w", err)
	}
	lvl, err := config.ParseLevel(level)
	if err != nil {
		return usagef("twophase", "twophase: %w", err)
	}
	tlsCfg, saslCfg, err := auth.KafkaAuth()
	if err != nil {
		return fmt.Errorf("twophase: %w", err)
	}
	opts, err := kafkasink.ClientOpts(tlsCfg, saslCfg)
	if err != nil {
		return fmt.Errorf("twophase: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg := tpkafka.Config{
		Brokers: strings.Split(brokers, ","), Group: group, TopicPrefix: prefix, OutTopic: outTopic,
		Timeout: timeout, Memory: int64(memory), ReplaySlack: slack, Logger: log, Opts: opts,
	}
	if topics != "" {
		cfg.Topics = strings.Split(topics, ",")
	}
	m, err := tpkafka.New(cfg)
	if err != nil {
		return fmt.Errorf("twophase: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if statsEvery > 0 {
		go func() {
			t := time.NewTicker(statsEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					log.Info("stats", "stats", fmt.Sprintf("%+v", m.Stats()))
				}
			}
		}()
	}
	err = m.Run(ctx)
	log.Info("done", "stats", fmt.Sprintf("%+v", m.Stats()))
	return err
}
