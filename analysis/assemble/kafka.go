package assemble

// Kafka output: the original's --kafka sends every record
// as one message, the same JSON as a line of the output files, UTF-8,
// without a key, to cse2.malware.events.{datasource}, where its filter
// tool consumes them.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// DefaultKafkaTimeout bounds the delivery of each record: a broker that is
// down fails the run after about this long instead of holding it forever.
const DefaultKafkaTimeout = 30 * time.Second

// KafkaBufferRecords bounds the records produced but not yet acknowledged;
// WriteBatch waits when it is reached, so a batch of any size costs bounded
// memory.
const KafkaBufferRecords = 10_000

// ErrKafkaTopic is returned by NewKafkaSink for a topic name Kafka does not
// allow (empty, too long, or with bytes other than ASCII letters, digits,
// '.', '_' and '-').
var ErrKafkaTopic = errors.New("assemble: bad Kafka topic name")

// KafkaTopic returns the original's topic for a datasource tag:
// cse2.malware.events.TAG.
func KafkaTopic(tag string) string { return "cse2.malware.events." + tag }

// KafkaConfig configures a KafkaSink.
type KafkaConfig struct {
	// Brokers are the seed brokers, host:port (required).
	Brokers []string
	// Topic receives every record (required; KafkaTopic(tag) is the
	// original's).
	Topic string
	// Timeout bounds each record's delivery (DefaultKafkaTimeout if 0).
	Timeout time.Duration
	// Opts are extra franz-go options applied last (TLS, SASL, tests).
	Opts []kgo.Opt
}

// KafkaSink publishes each batch's records to one topic. WriteBatch
// returns once every record of the batch is acknowledged by the brokers,
// or with the first delivery error: an offline run that cannot deliver
// stops rather than losing records unnoticed.
type KafkaSink struct {
	cl        *kgo.Client
	topic     string
	published uint64
	// handed counts the records given to the client (the tests check
	// that a failed batch stops early).
	handed uint64
}

var _ Sink = (*KafkaSink)(nil)

// NewKafkaSink returns a sink for cfg. It does not wait for the brokers;
// the first batch does.
func NewKafkaSink(cfg KafkaConfig) (*KafkaSink, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("assemble: no Kafka brokers")
	}
	if !kafkasink.ValidTopic(cfg.Topic) {
		return nil, fmt.Errorf("%w: %q", ErrKafkaTopic, cfg.Topic)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultKafkaTimeout
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("spoki-assemble"),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.MaxBufferedRecords(KafkaBufferRecords),
		// Brokers with auto.create.topics.enable create the topic, as
		// they did for the original; elsewhere the operator creates it.
		kgo.AllowAutoTopicCreation(),
	}
	cl, err := kgo.NewClient(append(opts, cfg.Opts...)...)
	if err != nil {
		return nil, fmt.Errorf("assemble: kafka client: %w", err)
	}
	return &KafkaSink{cl: cl, topic: cfg.Topic}, nil
}

// WriteBatch implements Sink.
func (s *KafkaSink) WriteBatch(_ int, recs []Record) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool
	)
	// Cancelled at the first failure, so that a Produce waiting for room
	// in the buffer gives up at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			failed.Store(true)
			cancel()
		}
		wg.Done()
	}
	for i := range recs {
		// Once a record failed the batch has failed: the rest would only
		// wait for the same timeout, KafkaBufferRecords at a time.
		if failed.Load() {
			break
		}
		// The client keeps the value until it is acknowledged: one
		// allocation per record.
		wg.Add(1)
		s.handed++
		s.cl.Produce(ctx, &kgo.Record{Topic: s.topic, Value: recs[i].AppendJSON(nil)}, done)
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("assemble: kafka %s: %w", s.topic, firstErr)
	}
	s.published += uint64(len(recs))
	return nil
}

// Published returns how many records the brokers acknowledged.
func (s *KafkaSink) Published() uint64 { return s.published }

// Topic returns the topic written to.
func (s *KafkaSink) Topic() string { return s.topic }

// Close closes the client. Every batch was acknowledged in WriteBatch, so
// nothing is left to flush.
func (s *KafkaSink) Close() { s.cl.Close() }

// Sinks writes each batch to every sink in order and stops at the first
// error, so a batch reaches Kafka only once its file is written.
type Sinks []Sink

// WriteBatch implements Sink.
func (ss Sinks) WriteBatch(batch int, recs []Record) error {
	for _, s := range ss {
		if err := s.WriteBatch(batch, recs); err != nil {
			return err
		}
	}
	return nil
}
