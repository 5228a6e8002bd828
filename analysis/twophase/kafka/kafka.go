// Package kafka runs the two-phase detector (analysis/twophase) over the
// `syn` topics of many telescopes, as a member of a Kafka consumer group:
// `spoki twophase --kafka BROKERS --group NAME`. Telescopes publish their
// `syn` events keyed by source address (records/kafkasink), so all SYNs of
// one source to one telescope sit in one partition of its topic, in the
// order they were published; the group spreads the partitions over its
// members, and each member keeps one detector table (fixed memory,
// Config.Memory) per partition it owns. Pairs are published as
// `two_phase` events to one topic.
//
// Nothing is lost or doubled across a rebalance: a member commits a
// partition's offsets only after the pairs of the records before them are
// acknowledged by the brokers, and a member that takes a partition over
// rebuilds its window first by replaying, without emitting, the records
// from the phase timeout (plus a slack) before the first one it is handed
// (found by Kafka's offset-for-time) up to that one. A pair whose phase
// two lies before the committed offset was published by the partition's
// previous owner; a pair whose phase two lies after it is published by the
// new owner alone. Only a member that dies (no revocation, no final
// commit) may leave the pairs of its last poll to be published again.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// Defaults of Config.
const (
	// DefaultReplaySlack widens the replay before the phase timeout: the
	// record timestamps are the telescopes' packet times, and several
	// producers on one topic interleave their records by up to their
	// linger and network delay.
	DefaultReplaySlack = 10 * time.Second
	// DefaultPollRecords is the most records one poll hands the member;
	// their pairs are flushed and their offsets committed before the next.
	DefaultPollRecords = 10_000
	// DefaultOutTag is the tag of the output topic's name.
	DefaultOutTag = "twophase"
)

// sweepInterval is how often (wall time) the tables are swept of phase
// ones past the timeout, so that the stats count the live ones.
const sweepInterval = 10 * time.Second

// Config configures a Member.
type Config struct {
	// Brokers are the seed brokers; Group is the consumer group (both
	// required).
	Brokers []string
	Group   string
	// TopicPrefix is the telescopes' --kafka-topic-prefix. Topics lists
	// the `syn` topics to read; empty means every topic named
	// PREFIXspoki.TAG.syn, also those created later.
	TopicPrefix string
	Topics      []string
	// OutTopic receives the `two_phase` events (default
	// PREFIXspoki.twophase.two_phase).
	OutTopic string
	// Timeout and Memory configure each partition's detector (twophase
	// defaults if zero): a member owning k partitions holds k tables.
	Timeout time.Duration
	Memory  int64
	// ReplaySlack widens the rebuild's replay (DefaultReplaySlack if
	// zero).
	ReplaySlack time.Duration
	// PollRecords bounds one poll (DefaultPollRecords if zero).
	PollRecords int
	// Logger receives rebalances and errors (discarded if nil).
	Logger *slog.Logger
	// Opts are extra franz-go options for every client: TLS and SASL
	// (kafkasink.ClientOpts), shorter timeouts in tests.
	Opts []kgo.Opt
}

// Stats counts what a Member did. Every record handed to the member is
// counted in exactly one of Consumed and Malformed; Replayed counts the
// records read again to rebuild windows.
type Stats struct {
	Consumed, Malformed, Replayed uint64
	// Pairs is the number of `two_phase` events published (acknowledged);
	// PublishErrors those the brokers refused for good; ReplayPairs the
	// pairs found while replaying, not published (the previous owner
	// did).
	Pairs, PublishErrors, ReplayPairs uint64
	// CommitErrors counts the polls whose flush or offset commit failed
	// (retried with the next poll's).
	CommitErrors uint64
	// Rebuilds counts the windows rebuilt; Partitions is the number owned
	// now.
	Rebuilds   uint64
	Partitions int64
}

// Member is one member of the detecting group.
type Member struct {
	cfg     Config
	log     *slog.Logger
	cl      *kgo.Client
	adm     *kadm.Client
	timeout time.Duration

	// mu guards parts: the group's callbacks run on franz-go's goroutines.
	mu    sync.Mutex
	parts map[topicPartition]*partition

	consumed, malformed, replayed, pairs, publishErrors, replayPairs, rebuilds atomic.Uint64
	commitErrors                                                               atomic.Uint64
	partitions                                                                 atomic.Int64
}

type topicPartition struct {
	topic string
	part  int32
}

// partition is the state of one owned partition: its window, and whether
// it was rebuilt since the member got it.
type partition struct {
	det    *twophase.Detector
	ready  bool
	host   string
	latest time.Time
}

// SYNTopics is the pattern of every telescope's `syn` topic under prefix.
func SYNTopics(prefix string) string {
	return "^" + regexp.QuoteMeta(prefix) + `spoki\.[A-Za-z0-9_-]+\.syn$`
}

// New returns a Member; it joins the group when Run starts.
func New(cfg Config) (*Member, error) {
	if len(cfg.Brokers) == 0 {
		return nil, kafkasink.ErrNoBrokers
	}
	if cfg.Group == "" {
		return nil, errors.New("twophase kafka: no group")
	}
	if cfg.OutTopic == "" {
		cfg.OutTopic = kafkasink.Topic(cfg.TopicPrefix, DefaultOutTag, "two_phase")
	}
	if !kafkasink.ValidTopic(cfg.OutTopic) {
		return nil, fmt.Errorf("twophase kafka: out topic %q: %w", cfg.OutTopic, kafkasink.ErrBadTopic)
	}
	if cfg.ReplaySlack <= 0 {
		cfg.ReplaySlack = DefaultReplaySlack
	}
	if cfg.PollRecords <= 0 {
		cfg.PollRecords = DefaultPollRecords
	}
	m := &Member{cfg: cfg, log: cfg.Logger, parts: map[topicPartition]*partition{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.timeout = twophase.New(twophase.Config{Timeout: cfg.Timeout, Memory: twophase.MinMemory}).Config().Timeout
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("spoki-twophase"),
		kgo.ConsumerGroup(cfg.Group),
		kgo.DisableAutoCommit(),
		// Rebalances wait while a poll's records are processed, flushed
		// and committed, so that a revoked partition's offsets are final.
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.revoked),
		kgo.OnPartitionsAssigned(m.assigned),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.AllowAutoTopicCreation(),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kgo.ConsumeTopics(cfg.Topics...))
	} else {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(SYNTopics(cfg.TopicPrefix)),
			kgo.MetadataMaxAge(10*time.Second))
	}
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("twophase kafka: %w", err)
	}
	m.cl, m.adm = cl, kadm.NewClient(cl)
	return m, nil
}

// Stats returns the counters.
func (m *Member) Stats() Stats {
	return Stats{
		Consumed: m.consumed.Load(), Malformed: m.malformed.Load(), Replayed: m.replayed.Load(),
		Pairs: m.pairs.Load(), PublishErrors: m.publishErrors.Load(), ReplayPairs: m.replayPairs.Load(),
		Rebuilds: m.rebuilds.Load(), Partitions: m.partitions.Load(), CommitErrors: m.commitErrors.Load(),
	}
}

func (m *Member) assigned(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, list := range ps {
		for _, p := range list {
			m.parts[topicPartition{t, p}] = &partition{}
		}
	}
	m.partitions.Store(int64(len(m.parts)))
	m.log.Info("partitions assigned", "partitions", fmt.Sprint(ps))
}

// revoked drops the windows of the partitions given away (or lost). Their
// offsets were committed before the rebalance could start (see Run).
func (m *Member) revoked(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, list := range ps {
		for _, p := range list {
			delete(m.parts, topicPartition{t, p})
		}
	}
	m.partitions.Store(int64(len(m.parts)))
	m.log.Info("partitions revoked", "partitions", fmt.Sprint(ps))
}

// part returns the state of an owned partition, making it if the
// assignment callback has not run (it has, in franz-go's order).
func (m *Member) part(tp topicPartition) *partition {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.parts[tp]
	if st == nil {
		st = &partition{}
		m.parts[tp] = st
		m.partitions.Store(int64(len(m.parts)))
	}
	return st
}

// Run consumes, detects and publishes until ctx ends, then commits what it
// processed and leaves the group. It returns nil when ctx ended.
func (m *Member) Run(ctx context.Context) error {
	defer m.cl.Close() // leaves the group
	lastSweep := time.Now()
	for {
		fs := m.cl.PollRecords(ctx, m.cfg.PollRecords)
		if ctx.Err() != nil || fs.IsClientClosed() {
			m.cl.AllowRebalance()
			break
		}
		fs.EachError(func(t string, p int32, err error) {
			m.log.Warn("fetch", "topic", t, "partition", p, "error", err)
		})
		// The records processed are committed even when ctx ends now:
		// a processed record left uncommitted would be processed again by
		// the partition's next owner, and its pairs published twice.
		var processed []*kgo.Record
		var err error
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if err != nil || len(fp.Records) == 0 {
				return
			}
			if err = m.process(ctx, fp.Topic, fp.Partition, fp.Records); err == nil {
				processed = append(processed, fp.Records...)
			}
		})
		if cerr := m.commit(context.WithoutCancel(ctx), processed); cerr != nil {
			// The next commit carries these offsets too; until then a
			// hand-over of these partitions would publish their pairs
			// again, which the counter and the line say.
			m.commitErrors.Add(1)
			m.log.Warn("commit", "error", cerr)
		}
		m.cl.AllowRebalance()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			return err
		}
		if time.Since(lastSweep) > sweepInterval {
			m.sweep()
			lastSweep = time.Now()
		}
	}
	return nil
}

// commitTimeout bounds the flush and commit of one poll.
const commitTimeout = time.Minute

// commit waits for the pairs published so far, then commits the offsets
// of the records processed: a committed offset never passes a pair that
// could still be lost.
func (m *Member) commit(ctx context.Context, processed []*kgo.Record) error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	if err := m.cl.Flush(ctx); err != nil {
		return fmt.Errorf("twophase kafka: flush: %w", err)
	}
	if len(processed) == 0 {
		return nil
	}
	if err := m.cl.CommitRecords(ctx, processed...); err != nil {
		return fmt.Errorf("twophase kafka: commit: %w", err)
	}
	return nil
}

func (m *Member) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.parts {
		if st.det != nil && !st.latest.IsZero() {
			st.det.Expire(st.latest)
		}
	}
}

// process runs the detector over one partition's records, after
// rebuilding its window if the member just got it.
func (m *Member) process(ctx context.Context, topic string, part int32, recs []*kgo.Record) error {
	st := m.part(topicPartition{topic, part})
	if !st.ready {
		if err := m.rebuild(ctx, st, topic, part, recs[0]); err != nil {
			return err
		}
	}
	var p records.Packet
	for _, r := range recs {
		if err := parseSYN(r.Value, &p); err != nil {
			m.malformed.Add(1)
			continue
		}
		m.consumed.Add(1)
		m.observe(st, &p, r, true)
	}
	return nil
}

// observe feeds one SYN; a pair is published when emit is set.
func (m *Member) observe(st *partition, p *records.Packet, r *kgo.Record, emit bool) {
	if p.Time.After(st.latest) {
		st.latest = p.Time
	}
	pair, ok := st.det.Observe(p)
	if !ok {
		return
	}
	if !emit {
		m.replayPairs.Add(1)
		return
	}
	t, line, err := twophase.PairEvent(pair, "phase_two", nil)
	if err != nil {
		m.publishErrors.Add(1)
		return
	}
	host := st.host
	for _, h := range r.Headers {
		if h.Key == kafkasink.HostHeader {
			host = string(h.Value)
		}
	}
	out := &kgo.Record{
		Topic: m.cfg.OutTopic, Key: pair.Src.Unmap().AppendTo(nil), Value: line, Timestamp: t,
		Headers: []kgo.RecordHeader{{Key: kafkasink.HostHeader, Value: []byte(host)}},
	}
	m.cl.Produce(context.Background(), out, m.published)
}

func (m *Member) published(r *kgo.Record, err error) {
	if err != nil {
		m.publishErrors.Add(1)
		m.log.Warn("publish two_phase", "error", err)
		return
	}
	m.pairs.Add(1)
}

// tagOf is the TAG of a topic PREFIXspoki.TAG.syn, the origin of its
// events when a record has no `host` header.
func tagOf(prefix, topic string) string {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + `spoki\.(.+)\.syn$`)
	if m := re.FindStringSubmatch(topic); m != nil {
		return m[1]
	}
	return topic
}

// rebuild makes the partition's detector and replays, without publishing,
// the records of the window before first, the first record the group
// handed this member: from the offset of first's timestamp less the
// timeout and the slack, up to first.
func (m *Member) rebuild(ctx context.Context, st *partition, topic string, part int32, first *kgo.Record) error {
	st.det = twophase.New(twophase.Config{Timeout: m.cfg.Timeout, Memory: m.cfg.Memory})
	st.host = tagOf(m.cfg.TopicPrefix, topic)
	st.ready = true
	m.rebuilds.Add(1)
	if first.Offset == 0 {
		return nil
	}
	since := first.Timestamp.Add(-m.timeout - m.cfg.ReplaySlack)
	offs, err := m.adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err != nil {
		return fmt.Errorf("twophase kafka: offset for time %s/%d: %w", topic, part, err)
	}
	o, ok := offs.Lookup(topic, part)
	if !ok || o.Err != nil {
		return fmt.Errorf("twophase kafka: offset for time %s/%d: %v", topic, part, o.Err)
	}
	from := o.Offset
	if from < 0 || from >= first.Offset {
		return nil
	}
	rc, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(m.cfg.Brokers...), kgo.ClientID("spoki-twophase-replay"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}})}, m.cfg.Opts...)...)
	if err != nil {
		return fmt.Errorf("twophase kafka: replay: %w", err)
	}
	defer rc.Close()
	var p records.Packet
	n := 0
	for {
		fs := rc.PollRecords(ctx, m.cfg.PollRecords)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fs.EachError(func(t string, p int32, err error) {
			m.log.Warn("replay fetch", "topic", t, "partition", p, "error", err)
		})
		done := false
		for _, r := range fs.Records() {
			if r.Offset >= first.Offset {
				done = true
				break
			}
			n++
			m.replayed.Add(1)
			if parseSYN(r.Value, &p) == nil {
				m.observe(st, &p, r, false)
			}
			if r.Offset == first.Offset-1 {
				done = true
				break
			}
		}
		if done {
			break
		}
	}
	m.log.Info("window rebuilt", "topic", topic, "partition", part, "from", from, "to", first.Offset, "records", n)
	return nil
}
