package kafkasink

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/records"
)

// Every broker here is franz-go's in-process kfake cluster on loopback.

// fastRetries makes the client retry a dead broker quickly, so that the
// restart tests do not wait for the default back-off.
var fastRetries = []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}

// newCluster starts a kfake cluster and closes it at the end of the test.
func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// freePort returns a loopback port nobody listens on (for a broker that is
// down, or that will start later).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// consumed is one record read back.
type consumed struct {
	key       string
	partition int32
}

// consumeAll reads the topics from the start until want records arrived,
// and fails the test on a duplicate value or a timeout. It returns the
// records by value.
func consumeAll(t *testing.T, addrs []string, want int, topics ...string) map[string]consumed {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make(map[string]consumed, want)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records, want %d", len(got), want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if _, dup := got[v]; dup {
				t.Errorf("record %q arrived twice", v)
			}
			got[v] = consumed{string(r.Key), r.Partition}
		})
	}
	return got
}

// endOffsets sums the end offsets of the topics' partitions: the number of
// records stored, duplicates included.
func endOffsets(t *testing.T, addrs []string, topics ...string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topics...)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		n += o.Offset
	})
	return n
}

// eventLine is a stand-in event line whose value is unique per seq.
func eventLine(eventType string, src netip.Addr, seq int) []byte {
	flow := &records.Flow{Remote: netip.AddrPortFrom(src, 40000), Local: netip.MustParseAddrPort("192.0.2.1:80")}
	line, err := records.AppendEvent(nil, eventType, time.Unix(1700000000, 0), flow, map[string]int{"seq": seq})
	if err != nil {
		panic(err)
	}
	return line
}

// srcOf gives event seq one of n sources.
func srcOf(seq, n int) netip.Addr {
	i := seq % n
	return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
}

func TestTopic(t *testing.T) {
	for _, c := range []struct{ prefix, tag, typ, want string }{
		{"", "", "syn", "spoki.untagged.syn"},
		{"lab.", "ucsd", "session", "lab.spoki.ucsd.session"},
		{"", "t", "two phase/x", "spoki.t.two_phase_x"},
	} {
		if got := Topic(c.prefix, c.tag, c.typ); got != c.want {
			t.Errorf("Topic(%q, %q, %q) = %q, want %q", c.prefix, c.tag, c.typ, got, c.want)
		}
	}
	if _, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Tag: "a/b"}); !errors.Is(err, ErrBadTopic) {
		t.Errorf("New with tag a/b: %v, want ErrBadTopic", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoBrokers) {
		t.Errorf("New without brokers: %v, want ErrNoBrokers", err)
	}
	for name, want := range map[string]bool{
		"cse2.malware.events.ucsd": true, "a-b_C.9": true, strings.Repeat("a", 249): true,
		"": false, ".": false, "..": false, "a/b": false, "événements": false, strings.Repeat("a", 250): false,
	} {
		if got := ValidTopic(name); got != want {
			t.Errorf("ValidTopic(%.20q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseHead(t *testing.T) {
	src := netip.MustParseAddr("2001:db8::7")
	flowLine := eventLine("downloader", src, 1)
	noFlow, err := records.AppendEvent(nil, "stats", time.Unix(1, 0), nil, map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	syn := records.AppendSYNEvent(nil, &records.Packet{Time: time.Unix(1, 0), Src: netip.MustParseAddr("203.0.113.9"),
		Dst: netip.MustParseAddr("192.0.2.1"), Proto: records.ProtoTCP, Flags: records.FlagSYN, WScale: -1})
	for _, c := range []struct {
		line    []byte
		typ     string
		src     netip.Addr
		wantsOK bool
	}{
		{flowLine, "downloader", src, true},
		{noFlow, "stats", netip.Addr{}, true},
		{syn, "syn", netip.MustParseAddr("203.0.113.9"), true},
		{[]byte(`{"a":1}`), "", netip.Addr{}, false},
		{[]byte(`{"timestamp":"x","event_type":"a\"b"}`), "", netip.Addr{}, false},
		{[]byte(`{"timestamp":"x","event_type":"a","src_ip":"nope"}`), "", netip.Addr{}, false},
	} {
		typ, got, ok := parseHead(c.line)
		if typ != c.typ || got != c.src || ok != c.wantsOK {
			t.Errorf("parseHead(%s) = %q, %v, %v; want %q, %v, %v", c.line, typ, got, ok, c.typ, c.src, c.wantsOK)
		}
	}
}

// TestPublishLoad publishes 100k events of two types from several
// goroutines and two Publishers in turn (a telescope restart): every event
// arrives once, and each source's events sit in one partition.
func TestPublishLoad(t *testing.T) {
	const (
		events     = 100_000
		sources    = 1000
		partitions = 8
		workers    = 4
	)
	types := []string{"syn", "session"}
	topics := []string{Topic("", "load", "syn"), Topic("", "load", "session")}
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	addrs := c.ListenAddrs()
	publishRange := func(from, to int) {
		p, err := New(Config{Brokers: addrs, Tag: "load", BufferRecords: events})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for seq := from + w; seq < to; seq += workers {
					src := srcOf(seq, sources)
					if !p.Publish(types[seq%2], src, eventLine(types[seq%2], src, seq)) {
						t.Errorf("event %d refused", seq)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		st := p.Stats()
		if st.Published != uint64(to-from) || st.InFlight != 0 || st.DropBufferFull+st.DropBrokerError+st.DropUnflushed != 0 {
			t.Fatalf("stats %+v, want %d published and no drops", st, to-from)
		}
	}
	publishRange(0, events/2)
	publishRange(events/2, events)

	got := consumeAll(t, addrs, events, topics...)
	if n := endOffsets(t, addrs, topics...); n != events {
		t.Errorf("topics hold %d records, want %d", n, events)
	}
	// The partition of a key is the same for both topics and both
	// publishers: one partition per source.
	part := map[string]int32{}
	used := map[int32]bool{}
	for v, r := range got {
		if p, ok := part[r.key]; ok && p != r.partition {
			t.Fatalf("key %s in partitions %d and %d (%s)", r.key, p, r.partition, v)
		}
		part[r.key] = r.partition
		used[r.partition] = true
	}
	if len(part) != sources || len(used) != partitions {
		t.Errorf("%d keys over %d partitions, want %d over %d", len(part), len(used), sources, partitions)
	}
}

// TestBrokerRestart restarts the broker (same port, same data directory)
// while events are published: every accepted event arrives exactly once.
func TestBrokerRestart(t *testing.T) {
	const events = 30_000
	topic := Topic("", "rs", "syn")
	dir := t.TempDir()
	port := freePort(t)
	opts := []kfake.Opt{kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites()}
	c, err := kfake.NewCluster(append(opts, kfake.SeedTopics(4, topic))...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c.ListenAddrs()

	p, err := New(Config{Brokers: addrs, Tag: "rs", BufferRecords: events, Linger: 5 * time.Millisecond, Opts: fastRetries})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	restarted := make(chan *kfake.Cluster, 1)
	go func() {
		// Mid-stream: down for half a second, then back with its data.
		time.Sleep(300 * time.Millisecond)
		c.Close()
		time.Sleep(500 * time.Millisecond)
		c2, err := kfake.NewCluster(opts...)
		if err != nil {
			t.Error(err)
		}
		restarted <- c2
	}()
	accepted := 0
	for seq := range events {
		if p.Publish("syn", srcOf(seq, 500), eventLine("syn", srcOf(seq, 500), seq)) {
			accepted++
		}
		if seq%1000 == 999 {
			time.Sleep(40 * time.Millisecond) // 1.2 s in all, spanning the restart
		}
	}
	c2 := <-restarted
	if c2 == nil {
		t.FailNow()
	}
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	t.Logf("accepted %d of %d, stats %+v", accepted, events, st)
	if accepted != events || st.Published != uint64(accepted) || st.DropBrokerError != 0 {
		t.Fatalf("accepted %d of %d, stats %+v: want all accepted and published", accepted, events, st)
	}
	consumeAll(t, c2.ListenAddrs(), accepted, topic)
	if n := endOffsets(t, c2.ListenAddrs(), topic); n != int64(accepted) {
		t.Errorf("topic holds %d records, want %d (none twice)", n, accepted)
	}
}

// TestBrokerDown publishes while no broker listens: Publish stays fast, the
// events beyond the buffer are dropped and counted, and the buffered ones
// arrive once a broker comes up.
func TestBrokerDown(t *testing.T) {
	const (
		buffer = 100
		events = 1000
	)
	topic := Topic("", "down", "session")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := New(Config{Brokers: []string{addr}, Tag: "down", BufferRecords: buffer, Opts: fastRetries})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	accepted := 0
	for seq := range events {
		if p.Publish("session", srcOf(seq, 10), eventLine("session", srcOf(seq, 10), seq)) {
			accepted++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publishing %d events with the broker down took %v", events, d)
	}
	st := p.Stats()
	if accepted != buffer || st.DropBufferFull != events-buffer || st.InFlight != buffer {
		t.Fatalf("accepted %d, stats %+v; want %d accepted, %d dropped", accepted, st, buffer, events-buffer)
	}

	c := newCluster(t, kfake.Ports(port), kfake.SeedTopics(2, topic))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Published != buffer || st.InFlight != 0 {
		t.Fatalf("after the broker came up: %+v, want %d published", st, buffer)
	}
	got := consumeAll(t, c.ListenAddrs(), buffer, topic)
	for seq := range buffer {
		if _, ok := got[string(eventLine("session", srcOf(seq, 10), seq))]; !ok {
			t.Errorf("buffered event %d missing", seq)
		}
	}
}

// TestCloseTimeout closes a Publisher whose broker never comes: Close
// returns within its timeout, and every event is counted once.
func TestCloseTimeout(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p, err := New(Config{Brokers: []string{addr}, BufferRecords: 10, CloseTimeout: 200 * time.Millisecond, Opts: fastRetries})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("203.0.113.5")
	for seq := range 15 {
		p.Publish("syn", src, eventLine("syn", src, seq))
	}
	start := time.Now()
	if err := p.Close(); !errors.Is(err, ErrUnflushed) {
		t.Errorf("Close = %v, want ErrUnflushed", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if p.Publish("syn", src, eventLine("syn", src, 99)) {
		t.Error("Publish after Close accepted")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	want := Stats{DropBufferFull: 5, DropUnflushed: 10, DropClosed: 1}
	if st := p.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// TestPublishHelpers checks the topics and keys of PublishSession,
// PublishSYN and PublishLine.
func TestPublishHelpers(t *testing.T) {
	const tag = "h"
	topics := []string{Topic("p.", tag, "session"), Topic("p.", tag, "syn"), Topic("p.", tag, "downloader")}
	c := newCluster(t, kfake.SeedTopics(1, topics...))
	p, err := New(Config{Brokers: c.ListenAddrs(), TopicPrefix: "p.", Tag: tag})
	if err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParseAddrPort("[::ffff:203.0.113.7]:5555")
	sess := &records.Session{Flow: records.Flow{Remote: remote, Local: netip.MustParseAddrPort("192.0.2.1:23"),
		Accepted: time.Unix(5, 0)}, End: time.Unix(6, 0), AppProto: "telnet", Detail: func() {}}
	// A SYN record's timestamp is its packet's time, from which the
	// delivery timeout counts: a packet of now, as the netstack's.
	syn := &records.Packet{Time: time.Now(), Src: netip.MustParseAddr("203.0.113.8"),
		Dst: netip.MustParseAddr("192.0.2.1"), Proto: records.ProtoTCP, Flags: records.FlagSYN, WScale: -1}
	ack := *syn
	ack.Flags = records.FlagACK
	if !p.PublishSession(sess) || !p.PublishSYN(syn) || p.PublishSYN(&ack) {
		t.Fatal("PublishSession/PublishSYN refused, or accepted an ACK")
	}
	if !p.PublishLine(eventLine("downloader", netip.MustParseAddr("203.0.113.9"), 1)) || p.PublishLine([]byte("junk\n")) {
		t.Fatal("PublishLine refused an event line, or accepted junk")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Published != 3 || st.EncodeErrors != 1 || st.DropMalformed != 1 {
		t.Errorf("stats %+v, want 3 published, 1 encode error, 1 malformed", st)
	}
	got := consumeAll(t, c.ListenAddrs(), 3, topics...)
	keys := map[string]bool{}
	for _, r := range got {
		keys[r.key] = true
	}
	for _, k := range []string{"203.0.113.7", "203.0.113.8", "203.0.113.9"} {
		if !keys[k] {
			t.Errorf("no record keyed %s; keys %v", k, keys)
		}
	}
}

func TestNilPublisher(t *testing.T) {
	var p *Publisher
	src := netip.MustParseAddr("203.0.113.1")
	if p.Publish("syn", src, []byte("{}")) || p.PublishLine(eventLine("syn", src, 1)) ||
		p.PublishSession(&records.Session{}) || p.PublishSYN(&records.Packet{Proto: records.ProtoTCP, Flags: records.FlagSYN}) {
		t.Error("nil Publisher accepted an event")
	}
	if p.Stats() != (Stats{}) || p.Flush(context.Background()) != nil || p.Close() != nil {
		t.Error("nil Publisher: Stats, Flush or Close not zero")
	}
}

// BenchmarkPublish measures the caller's cost of one event.
func BenchmarkPublish(b *testing.B) {
	c, err := kfake.NewCluster(kfake.SeedTopics(8, Topic("", "", "syn")))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p, err := New(Config{Brokers: c.ListenAddrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	line := eventLine("syn", srcOf(1, 1), 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p.Publish("syn", srcOf(i, 4096), line)
			i++
		}
	})
	b.StopTimer()
	b.Logf("%+v", p.Stats())
}
