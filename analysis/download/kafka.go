package download

// The live input: spoki's events read from Kafka (records/kafkasink) as a
// consumer group, so that several fetchers on several machines share the
// work, one partition each at a time. The original's downloader consumed
// cse2.malware.cleaned with auto-commit on, which loses the URLs being
// fetched when it dies; here an offset is committed only once the attempts
// of its record are in the store, so a record is handled at least once.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/records"
)

// Defaults of KafkaConfig.
const (
	// DefaultKafkaEventType is the event type consumed: handlers raise one
	// `downloader` event per URL they see, so its topic holds all the work.
	DefaultKafkaEventType = "downloader"
	// DefaultMaxPollRecords bounds the records handled between two chances
	// for the group to rebalance; with 10 s fetches it stays well inside
	// the default rebalance timeout (see KafkaConfig.MaxPollRecords).
	DefaultMaxPollRecords = 4
	// DefaultKafkaTag matches kafkasink.DefaultTag.
	DefaultKafkaTag = "untagged"
)

// KafkaTopic returns the topic of an event type as records/kafkasink.Topic
// names it: PREFIXspoki.TAG.EVENT_TYPE (DefaultKafkaTag if tag is empty).
// The analysis packages may not import the sink, so the format is repeated
// here, and a test pins it.
func KafkaTopic(prefix, tag, eventType string) string {
	if tag == "" {
		tag = DefaultKafkaTag
	}
	return prefix + "spoki." + tag + "." + eventType
}

// KafkaConfig configures a Consumer.
type KafkaConfig struct {
	// Brokers are the seed brokers, host:port (required).
	Brokers []string
	// Group is the consumer group (required): members of one group share
	// the partitions, and the group's committed offsets say what is done.
	Group string
	// Topics are the topics read (required), see KafkaTopic. Records of
	// `downloader` events give their URL; other events (session, syn)
	// give the URLs in their payload, as Scan finds them.
	Topics []string
	// MaxPollRecords is how many records are handled before the group may
	// rebalance (default DefaultMaxPollRecords). The member holds a
	// rebalance while it handles them, so MaxPollRecords times the longest
	// fetch must stay below the rebalance timeout (60 s by default), or
	// the member is dropped from the group.
	MaxPollRecords int
	// MaxURLsPerPayload caps the URLs taken from one session or syn
	// event's payload (default DefaultMaxURLsPerPayload; cut ones are
	// counted in KafkaStats.CutURLs).
	MaxURLsPerPayload int
	// Workers and PerHost bound the fetches that run at once, overall
	// and per server (see NewPool; default 1 and DefaultPerHost). The
	// Targets of one poll run in parallel; their records are committed
	// once all of them are done, up to the first that failed.
	Workers, PerHost int
	// Logger receives Warn lines for fetch and commit errors.
	Logger *slog.Logger
	// Opts are extra franz-go options applied last (TLS, SASL, timeouts).
	Opts []kgo.Opt
}

// KafkaStats counts what a Consumer read; read it after Run.
type KafkaStats struct {
	// Records counts the records handled (their offsets were committed or
	// are about to be).
	Records int
	// BadRecords counts records that are not JSON event lines; they are
	// skipped and committed.
	BadRecords int
	// Payloads, URLs and CutURLs count as in ScanStats.
	Payloads, URLs, CutURLs int
	// Commits counts successful commits, CommitErrors failed ones (their
	// records will be handled again by whoever gets the partition).
	Commits, CommitErrors int
	// FetchErrors counts partition fetch errors, which the client retries.
	FetchErrors int
}

// Consumer reads events from Kafka as a member of a consumer group.
type Consumer struct {
	cfg KafkaConfig
	cl  *kgo.Client
	log *slog.Logger
	// Stats is updated by Run.
	Stats KafkaStats
}

// NewConsumer creates the group member. It joins the group when Run first
// polls.
func NewConsumer(cfg KafkaConfig) (*Consumer, error) {
	if len(cfg.Brokers) == 0 || cfg.Group == "" || len(cfg.Topics) == 0 {
		return nil, errors.New("download: kafka: brokers, group and topics are required")
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = DefaultMaxPollRecords
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("spoki-download"),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		// Commits are ours, after the store has the attempt.
		kgo.DisableAutoCommit(),
		// No partition is taken away while its records are being handled,
		// so that what was handled is committed by the member that did it.
		kgo.BlockRebalanceOnPoll(),
		// A new group starts at the oldest retained event (the original
		// started at the latest, losing what came before its first run).
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("download: kafka: %w", err)
	}
	return &Consumer{cfg: cfg, cl: cl, log: log}, nil
}

// Close leaves the group, so that its partitions go to the other members
// at once.
func (c *Consumer) Close() {
	c.cl.Close()
}

// Run reads records until ctx is done or fn fails, and calls fn with each
// Target of each record (on up to KafkaConfig.Workers goroutines). A
// record's offset is committed only after fn returned nil for all its
// Targets and for those of the records before it in the poll: when fn
// fails (an error of the store) Run returns that error without committing
// that record, which the group hands out again. Run returns ctx's error
// when ctx is done.
func (c *Consumer) Run(ctx context.Context, fn func(context.Context, Target) error) error {
	pool := NewPool(c.cfg.Workers, c.cfg.PerHost, fn)
	for {
		fetches := c.cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		if fetches.IsClientClosed() {
			return net.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			c.cl.AllowRebalance()
			return err
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			c.Stats.FetchErrors++
			c.log.LogAttrs(ctx, slog.LevelWarn, "kafka fetch", slog.String("topic", topic),
				slog.Int("partition", int(p)), slog.String("error", err.Error()))
		})
		err := c.handle(ctx, fetches, pool)
		// Only now may the group move partitions: everything handled in
		// this batch has been committed (or failed and is left to others).
		c.cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// handle runs one batch through the pool and commits the records that
// are done: all of them, or those before the first whose Targets did not
// all succeed.
func (c *Consumer) handle(ctx context.Context, fetches kgo.Fetches, pool *Pool) error {
	var (
		recs     []*kgo.Record
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstBad = -1
		badErr   error
	)
	fail := func(i int, err error) {
		mu.Lock()
		if firstBad < 0 || i < firstBad {
			firstBad, badErr = i, err
		}
		mu.Unlock()
	}
submit:
	for it := fetches.RecordIter(); !it.Done(); {
		r := it.Next()
		i := len(recs)
		recs = append(recs, r)
		for _, t := range c.targets(r.Value) {
			wg.Add(1)
			err := pool.Submit(ctx, t, func(err error) {
				if err != nil {
					fail(i, err)
				}
				wg.Done()
			})
			if err != nil {
				wg.Done()
				fail(i, err)
				break submit
			}
		}
	}
	wg.Wait()
	done := recs
	if firstBad >= 0 {
		done = recs[:firstBad]
	}
	c.Stats.Records += len(done)
	// What came before a failed record is done: commit it so that it is
	// not fetched again by the next member.
	return errors.Join(badErr, c.commit(ctx, done))
}

// commitTimeout bounds one commit when ctx is done: the attempt is
// recorded, so its commit is still worth a try during shutdown.
const commitTimeout = 5 * time.Second

// commit commits the offsets after rs. A failed commit is counted and
// logged, not returned: the records are handled, and at worst the next
// owner of the partition handles them again (the rate limit of a shared
// store skips them). Only a cancelled ctx stops Run.
func (c *Consumer) commit(ctx context.Context, rs []*kgo.Record) error {
	if len(rs) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := c.cl.CommitRecords(cctx, rs...); err != nil {
		c.Stats.CommitErrors++
		c.log.LogAttrs(ctx, slog.LevelWarn, "kafka commit", slog.Int("records", len(rs)), slog.String("error", err.Error()))
		return nil
	}
	c.Stats.Commits++
	return nil
}

// downloaderLine is a `downloader` event (handlers.Downloader after the
// flow fields) or any other event line.
type downloaderLine struct {
	inputLine
	Tool   string `json:"tool"`
	URL    string `json:"url"`
	Server string `json:"server"`
	Port   int    `json:"port"`
	Name   string `json:"name"`
}

// targets returns the Targets of one record: the URL of a `downloader`
// event as the telescope found it, or the URLs in another event's payload.
func (c *Consumer) targets(value []byte) []Target {
	var in downloaderLine
	if err := json.Unmarshal(value, &in); err != nil || in.EventType == "" {
		c.Stats.BadRecords++
		return nil
	}
	var ts []Target
	if in.EventType == DefaultKafkaEventType {
		if in.URL == "" {
			c.Stats.BadRecords++
			return nil
		}
		t := Target{Download: urls.Download{Tool: in.Tool, URL: in.URL, Server: in.Server, Port: in.Port, Name: in.Name},
			Saddr: in.SrcIP, Daddr: in.DestIP, Sport: in.SrcPort, Dport: in.DestPort, Tag: in.EventType}
		if tm, err := records.ParseTimestamp(in.Timestamp); err == nil {
			t.TS = tm.UnixMilli()
		}
		ts = []Target{t}
	} else {
		var st ScanStats
		ts = targets(&in.inputLine, &st, c.cfg.MaxURLsPerPayload)
		c.Stats.Payloads += st.Payloads
		c.Stats.CutURLs += st.CutURLs
	}
	c.Stats.URLs += len(ts)
	return ts
}
