package download

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// FeedConfig says where Feed reads the targets: from Kafka if Brokers is
// set, else from the Inputs.
type FeedConfig struct {
	// Inputs are event log files or directories (Scan).
	Inputs []string
	// Brokers, TopicPrefix, Tags and Events are comma-separated lists:
	// the Kafka brokers and the topics (KafkaTopic) of each tag (default
	// DefaultKafkaTag) and event type (default DefaultKafkaEventType).
	Brokers, TopicPrefix, Tags, Events string
	// Group is the consumer group shared by the fetchers.
	Group string
	// Timeout is the bound of one fetch; it sets how many records one
	// poll may take (RebalanceBudget).
	Timeout time.Duration
	// Workers, PerHost and MaxURLsPerPayload are as in NewPool and
	// ScanConfig.
	Workers, PerHost, MaxURLsPerPayload int
	// Logger logs the Kafka consumer's ready line.
	Logger *slog.Logger
}

// RebalanceBudget is the part of the group's rebalance timeout (franz-go's
// default, 60 s) that one poll's fetches may take; the rest is margin for
// the commits and the rdns lookups.
const RebalanceBudget = 45 * time.Second

// Feed reads the targets from Kafka or from the input files and hands them
// to handle, at most cfg.Workers at once; with Kafka it runs until ctx is
// done. It returns the reader's counters for the last log line.
func Feed(ctx context.Context, cfg FeedConfig, handle func(context.Context, Target) error) ([]slog.Attr, error) {
	if cfg.Brokers != "" {
		ks, err := feedKafka(ctx, cfg, handle)
		return []slog.Attr{slog.Int("records", ks.Records), slog.Int("bad_records", ks.BadRecords),
			slog.Int("payloads", ks.Payloads), slog.Int("urls", ks.URLs), slog.Int("cut_urls", ks.CutURLs),
			slog.Int("commits", ks.Commits), slog.Int("commit_errors", ks.CommitErrors)}, err
	}
	var st ScanStats
	pool := NewPool(cfg.Workers, cfg.PerHost, handle)
	err := Scan(ctx, cfg.Inputs, ScanConfig{MaxURLsPerPayload: cfg.MaxURLsPerPayload}, &st,
		func(t Target) error { return pool.Submit(ctx, t, nil) })
	err = errors.Join(err, pool.Wait())
	return []slog.Attr{slog.Int("files", st.Files), slog.Int("lines", st.Lines), slog.Int("bad_lines", st.BadLines),
		slog.Int("payloads", st.Payloads), slog.Int("urls", st.URLs), slog.Int("cut_urls", st.CutURLs)}, err
}

// feedKafka consumes the topics of cfg as a member of cfg.Group until ctx
// is done, calling handle with each Target.
func feedKafka(ctx context.Context, cfg FeedConfig, handle func(context.Context, Target) error) (KafkaStats, error) {
	var topics []string
	for _, tag := range SplitList(cfg.Tags, DefaultKafkaTag) {
		for _, ev := range SplitList(cfg.Events, DefaultKafkaEventType) {
			topics = append(topics, KafkaTopic(cfg.TopicPrefix, tag, ev))
		}
	}
	c, err := NewConsumer(KafkaConfig{
		Brokers: SplitList(cfg.Brokers, ""), Group: cfg.Group, Topics: topics,
		// Each record may cost a whole fetch; the member must hand its
		// partitions back within the rebalance timeout.
		MaxPollRecords:    max(1, int(RebalanceBudget/cfg.Timeout)),
		Workers:           cfg.Workers,
		PerHost:           cfg.PerHost,
		MaxURLsPerPayload: cfg.MaxURLsPerPayload,
		Logger:            cfg.Logger,
	})
	if err != nil {
		return KafkaStats{}, err
	}
	defer c.Close()
	cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ready", slog.String("group", cfg.Group), slog.Any("topics", topics))
	err = c.Run(ctx, handle)
	return c.Stats, err
}

// SplitList splits a comma-separated list, dropping empty items; an empty
// list gives def (none if def is empty).
func SplitList(s, def string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	if len(out) == 0 && def != "" {
		out = []string{def}
	}
	return out
}

// Attrs are the downloader's counters for the last log line.
func (s Stats) Attrs() []slog.Attr {
	return []slog.Attr{
		slog.Int("fetches", s.Fetches), slog.Int("successes", s.Successes), slog.Int("failures", s.Failures),
		slog.Int("denied", s.Denied), slog.Int("skipped", s.Skipped), slog.Int("unsupported", s.Unsupported),
		slog.Int("too_long", s.TooLong), slog.Int("stored", s.Stored), slog.Int("store_full", s.StoreFull),
		slog.Int64("store_bytes", s.StoreBytes), slog.Int("state_entries", s.StateEntries),
		slog.Int64("state_bytes", s.StateBytes), slog.Int("evicted", s.Evicted), slog.Int("expired", s.Expired),
		slog.Int("tried_compactions", s.Compactions)}
}
