// Package kafkasink publishes spoki's events to Kafka, the engine for
// deployments that outgrow one machine. It is a second, best-effort sink
// next to records/filesink: the event log on disk stays the source of truth,
// so nothing here ever blocks the caller. When the brokers are down the
// events that fit the bounded buffer wait there and are sent once the client
// has reconnected (franz-go reconnects by itself); the rest are dropped and
// counted.
//
// Each event goes, as the same JSON line as in the event log, to the topic
// of its type and the telescope's tag (see Topic), keyed by the source
// address so that all events of one source land in one partition, where one
// consumer sees them in order. Records are batched (Config.Linger) and
// zstd-compressed, and the producer is idempotent (franz-go's default), so a
// batch retried across a broker restart is written once.
package kafkasink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/records"
)

// Defaults for the zero values of Config.
const (
	// DefaultBufferRecords holds about half a second of a SYN flood at
	// 130k events/s: long enough to ride out a leader change, small enough
	// that an outage costs bounded memory.
	DefaultBufferRecords = 1 << 16
	// DefaultBufferBytes caps the buffered lines' bytes, since session
	// events with payloads are far larger than SYN events.
	DefaultBufferBytes = 64 << 20
	// DefaultLinger lets a quiet telescope still fill batches: events are
	// not urgent, and larger batches compress better.
	DefaultLinger = 50 * time.Millisecond
	// DefaultCloseTimeout bounds the final flush, so that a dead broker
	// cannot hold up shutdown.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultDeliveryTimeout bounds the time an event waits for the
	// brokers: past it, the event is dropped and counted by the cause of
	// the last failure, so that refused credentials show as auth drops
	// instead of an ever-full buffer. Two minutes ride out a broker
	// restart or a leader election.
	DefaultDeliveryTimeout = 2 * time.Minute
	// DefaultTag is the tag when Config.Tag is empty; it matches
	// filesink.DefaultTag so that file names and topics agree.
	DefaultTag = "untagged"
)

// warnInterval is the least time between two Warn lines of one cause: drops
// are counted, and the log only says that they happen.
const warnInterval = time.Minute

// promiseWait bounds Close's wait for the promises of the records the
// client failed when it closed.
const promiseWait = 2 * time.Second

// Config configures a Publisher. Zero values mean the defaults.
type Config struct {
	// Brokers are the seed brokers, host:port (required).
	Brokers []string
	// TopicPrefix is prepended to every topic name (e.g. "lab.").
	TopicPrefix string
	// Tag names the telescope in topic names (DefaultTag if empty).
	Tag string
	// BufferRecords and BufferBytes bound the events accepted but not yet
	// acknowledged by the brokers; beyond either, new events are dropped.
	BufferRecords int
	BufferBytes   int64
	// Linger is how long a partition's batch waits for more events.
	Linger time.Duration
	// CloseTimeout bounds the flush in Close.
	CloseTimeout time.Duration
	// DeliveryTimeout bounds an event's wait for the brokers' ack. It
	// counts from the record's timestamp, which for a `syn` event is the
	// packet's time: publishing old packets (a replay) needs a longer one.
	DeliveryTimeout time.Duration
	// Logger receives the Warn lines about drops (discarded if nil).
	Logger *slog.Logger
	// Host names the sensor in the `host` header of every record (Tag if
	// empty), so that consumers of merged vantage points know the origin
	// of an event without parsing it.
	Host string
	// TLS, when set, connects to the brokers over TLS; SASL, when set,
	// authenticates with it (see ClientOpts).
	TLS  *TLS
	SASL *SASL
	// Opts are extra franz-go options applied last, such as shorter retry
	// back-offs in tests.
	Opts []kgo.Opt
}

// HostHeader is the key of the record header that names the sensor.
const HostHeader = "host"

// Stats is a snapshot of a Publisher's counters. Once Close has returned,
// every event handed to the Publisher is counted in exactly one of
// Published and the Drop counters. The tags describe each field for
// spoki's stats line and metrics (package stats).
type Stats struct {
	// Published counts events acknowledged by the brokers.
	Published uint64 `line:"kafka_published" metric:"kafkasink_published_total" help:"Events the Kafka brokers acknowledged."`
	// DropBufferFull counts events refused because BufferRecords or
	// BufferBytes were reached (the newest event is dropped), typically
	// while the brokers are unreachable.
	DropBufferFull uint64 `line:"kafka_dropped kafka_drop_buffer_full" metric:"kafkasink_drops_total{cause=buffer_full}" help:"Events not published to Kafka, by cause: buffer_full (the producer's buffer was full: brokers slow or down), broker_error (refused for good), unflushed (still buffered when the close's flush timed out), closed (handed in after close), auth (TLS or SASL refused), malformed (not an event line)."`
	// DropBrokerError counts events the client gave up on: the topic does
	// not exist and cannot be created, the record is too large, or the
	// brokers refused it for good.
	DropBrokerError uint64 `line:"kafka_dropped kafka_drop_broker_error" metric:"kafkasink_drops_total{cause=broker_error}"`
	// DropUnflushed counts events still buffered when Close's flush timed
	// out.
	DropUnflushed uint64 `line:"kafka_dropped kafka_drop_unflushed" metric:"kafkasink_drops_total{cause=unflushed}"`
	// DropClosed counts events handed in after Close.
	DropClosed uint64 `line:"kafka_dropped kafka_drop_closed" metric:"kafkasink_drops_total{cause=closed}"`
	// DropAuth counts events the client gave up on because the brokers
	// refused the connection's TLS or SASL authentication (wrong
	// credentials, an unknown CA): a configuration problem, logged once a
	// minute with the cause.
	DropAuth uint64 `line:"kafka_dropped kafka_drop_auth" metric:"kafkasink_drops_total{cause=auth}"`
	// DropMalformed counts lines given to PublishLine whose head is not
	// that of an event line.
	DropMalformed uint64 `line:"kafka_dropped kafka_drop_malformed" metric:"kafkasink_drops_total{cause=malformed}"`
	// EncodeErrors counts session events whose Detail failed to encode;
	// the line is still published, with detail_error.
	EncodeErrors uint64 `line:"kafka_encode_errors" metric:"kafkasink_encode_errors_total" help:"Session events whose detail failed to encode (published with detail_error)."`
	// InFlight and InFlightBytes are the events (and their bytes) accepted
	// but not yet acknowledged or dropped, now.
	InFlight      int64 `line:"kafka_in_flight" metric:"kafkasink_in_flight" help:"Events accepted but not yet acknowledged or dropped."`
	InFlightBytes int64 `line:"kafka_in_flight_bytes" metric:"kafkasink_in_flight_bytes" help:"Bytes of the events in flight."`
}

// Publisher sends events to Kafka. Its methods never block and may be
// called from any number of goroutines. A nil *Publisher is valid and does
// nothing, so that a telescope without --kafka needs no checks at its call
// sites.
type Publisher struct {
	cfg    Config
	cl     *kgo.Client
	logger *slog.Logger
	prefix string // TopicPrefix + "spoki." + tag + "."
	// headers is the `host` header, shared by every record (the client
	// only reads it).
	headers []kgo.RecordHeader

	// mu orders the publish methods against Close: once closed is set under
	// the write lock, no event enters the client, so the flush is final.
	mu     sync.RWMutex
	closed bool

	// topics caches the topic name of each event type, so that the hot
	// path does not build a string per event.
	topics sync.Map // string → string

	// pending counts the records whose promise has not run, so that Close
	// can wait for the last ones and leave the counters final.
	pending sync.WaitGroup

	inFlight, inFlightBytes                                atomic.Int64
	published, dropBufferFull, dropBrokerError, dropClosed atomic.Uint64
	dropUnflushed, dropMalformed, encodeErrors, dropAuth   atomic.Uint64
	lastWarnBufferFull, lastWarnBrokerError, lastWarnAuth  atomic.Int64 // UnixNano
	// authFailing is set while the latest connection to a broker failed
	// in its TLS or SASL set-up (see authHook), so that the events that
	// then time out are counted as auth drops.
	authFailing atomic.Bool
	authErr     atomic.Pointer[string]

	// promise is p.finish, bound once so that a record does not allocate
	// a method value.
	promise func(*kgo.Record, error)
}

// New returns a Publisher for the brokers. It does not wait for them: a
// telescope starts while Kafka is down, and the client connects when it can.
func New(cfg Config) (*Publisher, error) {
	if len(cfg.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	if cfg.Tag == "" {
		cfg.Tag = DefaultTag
	}
	if !legalTopicPart(cfg.TopicPrefix) || !legalTopicPart(cfg.Tag) {
		return nil, fmt.Errorf("kafkasink: prefix %q, tag %q: %w", cfg.TopicPrefix, cfg.Tag, ErrBadTopic)
	}
	if cfg.BufferRecords <= 0 {
		cfg.BufferRecords = DefaultBufferRecords
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = DefaultBufferBytes
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Tag
	}
	authOpts, err := ClientOpts(cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, logger: cfg.Logger, prefix: cfg.TopicPrefix + "spoki." + cfg.Tag + ".",
		headers: []kgo.RecordHeader{{Key: HostHeader, Value: []byte(cfg.Host)}}}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	p.promise = p.finish
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("spoki"),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// Our own counters gate the buffer (see enqueue); franz-go's limit
		// is twice as large so that it is never the one reached: its
		// TryProduce may park the caller when refusals outpace its promise
		// goroutine, and the caller here is the packet path.
		kgo.MaxBufferedRecords(2 * cfg.BufferRecords),
		// Kafka's murmur2 on the key, as the Java client: a source maps to
		// the same partition whichever vantage point or client produced it.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// Brokers with auto.create.topics.enable create the topics of new
		// event types; elsewhere the operator creates them.
		kgo.AllowAutoTopicCreation(),
	}
	opts = append(opts, authOpts...)
	opts = append(opts, kgo.WithHooks(authHook{p}))
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafkasink: new client: %w", err)
	}
	p.cl = cl
	return p, nil
}

// Topic returns the topic of an event type: PREFIXspoki.TAG.EVENT_TYPE,
// e.g. "spoki.untagged.session". An empty tag means DefaultTag. Characters
// Kafka does not allow in topic names become '_'. Consumers build the same
// name (analysis/download.KafkaTopic).
func Topic(prefix, tag, eventType string) string {
	if tag == "" {
		tag = DefaultTag
	}
	return sanitize(prefix + "spoki." + tag + "." + eventType)
}

// topic returns the cached topic of eventType.
func (p *Publisher) topic(eventType string) string {
	if t, ok := p.topics.Load(eventType); ok {
		return t.(string)
	}
	t := sanitize(p.prefix + eventType)
	p.topics.Store(eventType, t)
	return t
}

// Publish queues one event line (as written to the event log) for the topic
// of eventType, keyed by src (no key if src is invalid, e.g. for stats
// events). line is copied. It never blocks; it reports whether the event
// was accepted (a refused event is counted).
func (p *Publisher) Publish(eventType string, src netip.Addr, line []byte) bool {
	if p == nil {
		return false
	}
	return p.enqueue(eventType, src, bytes.Clone(line), time.Time{})
}

// PublishSession encodes s with records.AppendSessionEvent and queues it,
// keyed by the scanner's address.
func (p *Publisher) PublishSession(s *records.Session) bool {
	if p == nil {
		return false
	}
	line, err := records.AppendSessionEvent(nil, s)
	if err != nil {
		p.encodeErrors.Add(1)
	}
	return p.enqueue(records.EventSession, s.Flow.Remote.Addr(), line, time.Time{})
}

// PublishSYN encodes the `syn` event of p with records.AppendSYNEvent and
// queues it, keyed by the packet's source, with the packet's time as the
// record's timestamp, so that a consumer can seek a `syn` topic by packet
// time (`spoki twophase` rebuilds its window so). Packets that are not SYNs
// (Packet.IsSYN) have no event and are ignored.
func (p *Publisher) PublishSYN(pkt *records.Packet) bool {
	if p == nil || !pkt.IsSYN() {
		return false
	}
	return p.enqueue(records.EventSYN, pkt.Src, records.AppendSYNEvent(nil, pkt), pkt.Time)
}

// PublishLine queues an event line encoded by records (AppendEvent and
// the others), taking event_type and src_ip from the line's head, which
// records writes in a fixed layout. It is the tee for sinks that hand
// lines around without their fields, such as handlers.MuxConfig.EmitEvent.
// line is copied.
func (p *Publisher) PublishLine(line []byte) bool {
	if p == nil {
		return false
	}
	eventType, src, ok := parseHead(line)
	if !ok {
		p.dropMalformed.Add(1)
		return false
	}
	return p.enqueue(eventType, src, bytes.Clone(line), time.Time{})
}

// enqueue hands value, which it owns, to the client unless the buffer is
// full or the Publisher closed. A zero ts means now.
func (p *Publisher) enqueue(eventType string, src netip.Addr, value []byte, ts time.Time) bool {
	var key []byte
	if src.IsValid() {
		// Unmapped, so that ::ffff:192.0.2.1 and 192.0.2.1 share a key.
		key = src.Unmap().AppendTo(make([]byte, 0, 16))
	}
	size := int64(len(key) + len(value))
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		p.dropClosed.Add(1)
		return false
	}
	// Reserve first, then check, so that racing callers never overshoot.
	n, b := p.inFlight.Add(1), p.inFlightBytes.Add(size)
	if n > int64(p.cfg.BufferRecords) || b > p.cfg.BufferBytes {
		p.inFlight.Add(-1)
		p.inFlightBytes.Add(-size)
		p.dropBufferFull.Add(1)
		p.warn(&p.lastWarnBufferFull, "kafka buffer full", nil)
		return false
	}
	r := &kgo.Record{Topic: p.topic(eventType), Key: key, Value: value, Headers: p.headers, Timestamp: ts}
	p.pending.Add(1)
	p.cl.TryProduce(context.Background(), r, p.promise)
	return true
}

// finish is the promise of every record: it releases the record's buffer
// reservation and counts the outcome exactly once.
func (p *Publisher) finish(r *kgo.Record, err error) {
	defer p.pending.Done()
	p.inFlight.Add(-1)
	p.inFlightBytes.Add(-int64(len(r.Key) + len(r.Value)))
	switch {
	case err == nil:
		p.published.Add(1)
	case errors.Is(err, kgo.ErrMaxBuffered):
		// Not expected (franz-go's limit is twice ours), but counted where
		// it belongs.
		p.dropBufferFull.Add(1)
	case errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled):
		p.dropUnflushed.Add(1)
	case isAuthError(err) || p.authFailing.Load():
		p.dropAuth.Add(1)
		if cause := p.authErr.Load(); cause != nil {
			err = fmt.Errorf("%w (connecting: %s)", err, *cause)
		}
		p.warn(&p.lastWarnAuth, "kafka authentication failed", err)
	default:
		p.dropBrokerError.Add(1)
		p.warn(&p.lastWarnBrokerError, "kafka publish failed", err)
	}
}

// warn logs msg with the counters at most once per warnInterval per cause.
func (p *Publisher) warn(last *atomic.Int64, msg string, err error) {
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(warnInterval) || !last.CompareAndSwap(prev, now) {
		return
	}
	attrs := []slog.Attr{
		slog.Uint64("published", p.published.Load()),
		slog.Uint64("drop_buffer_full", p.dropBufferFull.Load()),
		slog.Uint64("drop_broker_error", p.dropBrokerError.Load()),
		slog.Uint64("drop_auth", p.dropAuth.Load()),
		slog.Int64("in_flight", p.inFlight.Load()),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	p.logger.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// Stats returns a snapshot of the counters.
func (p *Publisher) Stats() Stats {
	if p == nil {
		return Stats{}
	}
	return Stats{
		Published:       p.published.Load(),
		DropBufferFull:  p.dropBufferFull.Load(),
		DropBrokerError: p.dropBrokerError.Load(),
		DropUnflushed:   p.dropUnflushed.Load(),
		DropClosed:      p.dropClosed.Load(),
		DropMalformed:   p.dropMalformed.Load(),
		DropAuth:        p.dropAuth.Load(),
		EncodeErrors:    p.encodeErrors.Load(),
		InFlight:        p.inFlight.Load(),
		InFlightBytes:   p.inFlightBytes.Load(),
	}
}

// Flush waits until every event accepted so far is acknowledged or dropped,
// or ctx is done.
func (p *Publisher) Flush(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafkasink: flush: %w", err)
	}
	return nil
}

// Close stops taking events and flushes the buffer for at most
// Config.CloseTimeout; what is still buffered then is dropped and counted in
// DropUnflushed, and the error wraps ErrUnflushed. Events handed in
// afterwards are counted in DropClosed. Close is safe to call more than once.
func (p *Publisher) Close() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CloseTimeout)
	defer cancel()
	ferr := p.cl.Flush(ctx)
	left := p.inFlight.Load()
	// Close fails what is left; the promises may still be running when it
	// returns, so wait for them (bounded, in case one never comes) to leave
	// the counters final.
	p.cl.Close()
	done := make(chan struct{})
	go func() { p.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(promiseWait):
	}
	if ferr != nil {
		return fmt.Errorf("kafkasink: close: %d events: %w (%w)", left, ErrUnflushed, ferr)
	}
	return nil
}
