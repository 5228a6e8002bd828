package assemble

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Every broker here is franz-go's in-process kfake cluster on loopback.

func newKfake(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// consumeTopic reads topic from the start until want records arrived (or
// fails after a minute), and returns them in partition order.
func consumeTopic(t *testing.T, addrs []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records of %s, want %d", len(got), topic, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

// TestKafkaExample assembles the example logs into files and Kafka at
// once: the topic holds one message per record, in the files' order, each
// the file's line without its line end, without a key.
func TestKafkaExample(t *testing.T) {
	topic := KafkaTopic("test")
	addrs := newKfake(t, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	ks, err := NewKafkaSink(KafkaConfig{Brokers: addrs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	files := &FileSink{Dir: t.TempDir(), Tag: "test"}
	var st Stats
	cfg := Config{Dir: exampleLogs(t), Tag: "test", Start: exampleStart, FlushAtEOF: true}
	if err := Run(context.Background(), cfg, Sinks{files, ks}, &st); err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for _, f := range files.Written {
		lines = append(lines, bytes.Split(bytes.TrimSuffix(readGz(t, f), []byte("\n")), []byte("\n"))...)
	}
	if uint64(len(lines)) != st.Records || ks.Published() != st.Records || st.Records == 0 {
		t.Fatalf("files hold %d lines, Kafka acknowledged %d, records %d", len(lines), ks.Published(), st.Records)
	}
	got := consumeTopic(t, addrs, topic, len(lines))
	if len(got) != len(lines) {
		t.Fatalf("topic holds %d records, want %d", len(got), len(lines))
	}
	for i, r := range got {
		if r.Key != nil {
			t.Fatalf("record %d has key %q, want none", i, r.Key)
		}
		if !bytes.Equal(r.Value, lines[i]) {
			t.Fatalf("record %d = %s\nfile line %s", i, r.Value, lines[i])
		}
	}
}

// TestKafkaOwnTopic: --kafka-topic names another topic, which a broker
// with auto-creation creates.
func TestKafkaOwnTopic(t *testing.T) {
	addrs := newKfake(t, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	ks, err := NewKafkaSink(KafkaConfig{Brokers: addrs, Topic: "lab.assembled-events"})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	recs := []Record{{ts: 1634158800, tag: tagISYN}, {ts: 1634158801, tag: tagRSYN}}
	if err := ks.WriteBatch(0, recs); err != nil {
		t.Fatal(err)
	}
	got := consumeTopic(t, addrs, "lab.assembled-events", 2)
	for i, r := range got {
		if want := recs[i].AppendJSON(nil); !bytes.Equal(r.Value, want) {
			t.Errorf("record %d = %s, want %s", i, r.Value, want)
		}
	}
}

// TestKafkaBrokerDown: a batch that cannot be delivered fails (and so the
// run) once the delivery timeout passed, instead of hanging.
func TestKafkaBrokerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	ks, err := NewKafkaSink(KafkaConfig{Brokers: []string{addr}, Topic: KafkaTopic("t"), Timeout: time.Second,
		Opts: []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })}})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	// More records than the client buffers: the first to time out ends
	// the batch, the rest are not handed to the client to time out too.
	recs := make([]Record, 2*KafkaBufferRecords+1)
	for i := range recs {
		recs[i] = Record{ts: int64(i), tag: tagISYN}
	}
	done := make(chan error, 1)
	go func() { done <- ks.WriteBatch(0, recs) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("WriteBatch to a dead broker succeeded")
		}
		t.Logf("error: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("WriteBatch to a dead broker still waits after a minute")
	}
	if ks.Published() != 0 {
		t.Errorf("published %d", ks.Published())
	}
	if ks.handed >= uint64(len(recs)) {
		t.Errorf("all %d records were handed to the client after the first failed", ks.handed)
	}
	t.Logf("%d of %d records handed to the client", ks.handed, len(recs))
}

func TestKafkaConfig(t *testing.T) {
	if _, err := NewKafkaSink(KafkaConfig{Topic: "x"}); err == nil {
		t.Error("no brokers accepted")
	}
	for _, topic := range []string{"", "a/b", "..", "evénements", strings.Repeat("a", 250)} {
		if _, err := NewKafkaSink(KafkaConfig{Brokers: []string{"127.0.0.1:9"}, Topic: topic}); !errors.Is(err, ErrKafkaTopic) {
			t.Errorf("topic %q: %v, want ErrKafkaTopic", topic, err)
		}
	}
	if got := KafkaTopic("ucsd"); got != "cse2.malware.events.ucsd" {
		t.Errorf("KafkaTopic = %q", got)
	}
}
