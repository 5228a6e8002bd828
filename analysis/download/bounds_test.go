package download

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/records"
)

// TestPoolBounds runs slow jobs through a pool: never more than workers at
// once, never more than perHost for one server, and a busy server does
// not hold back the others queued behind it.
func TestPoolBounds(t *testing.T) {
	const workers, perHost = 4, 2
	var mu sync.Mutex
	running, maxRunning := 0, 0
	perServer, maxPerServer := map[string]int{}, map[string]int{}
	var order []string
	fn := func(_ context.Context, tg Target) error {
		mu.Lock()
		running++
		perServer[tg.Server]++
		maxRunning = max(maxRunning, running)
		maxPerServer[tg.Server] = max(maxPerServer[tg.Server], perServer[tg.Server])
		order = append(order, tg.Server)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		perServer[tg.Server]--
		mu.Unlock()
		return nil
	}
	p := NewPool(workers, perHost, fn)
	// Ten for server a first, then one each for b..e: b..e must start
	// before a's last ones.
	var ts []Target
	for i := range 10 {
		ts = append(ts, Target{Download: urls.Download{Server: "a.example", URL: fmt.Sprint("http://a.example/", i)}})
	}
	for _, s := range []string{"b", "c", "d", "e"} {
		ts = append(ts, Target{Download: urls.Download{Server: s + ".example", URL: "http://" + s + ".example/"}})
	}
	var done atomic.Int32
	for _, tg := range ts {
		if err := p.Submit(context.Background(), tg, func(error) { done.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if int(done.Load()) != len(ts) {
		t.Errorf("%d done callbacks, want %d", done.Load(), len(ts))
	}
	if maxRunning > workers || maxRunning < 2 {
		t.Errorf("at most %d ran at once, want 2..%d", maxRunning, workers)
	}
	for s, n := range maxPerServer {
		if n > perHost {
			t.Errorf("%s: %d at once, want at most %d", s, n, perHost)
		}
	}
	lastA := 0
	for i, s := range order {
		if s == "a.example" {
			lastA = i
		}
	}
	if ie := indexOf(order, "e.example"); ie < 0 || ie > lastA {
		t.Errorf("order %v: e.example waited behind all of a.example", order)
	}
	if ib := indexOf(order, "b.example"); ib >= workers {
		t.Errorf("b.example started %dth, want in the first %d (a.example is capped at %d): %v", ib, workers, perHost, order)
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// TestPoolStopsOnError: fn's error drops the queue and is returned.
func TestPoolStopsOnError(t *testing.T) {
	boom := errors.New("store broke")
	var calls atomic.Int32
	p := NewPool(1, 1, func(_ context.Context, tg Target) error {
		calls.Add(1)
		if tg.URL == "2" {
			return boom
		}
		return nil
	})
	var dropped atomic.Int32
	var err error
	for i := range 100 {
		err = p.Submit(context.Background(), Target{Download: urls.Download{URL: fmt.Sprint(i), Server: "s"}}, func(e error) {
			if e != nil {
				dropped.Add(1)
			}
		})
		if err != nil {
			break
		}
	}
	if werr := p.Wait(); !errors.Is(werr, boom) {
		t.Errorf("Wait = %v, want %v", werr, boom)
	}
	if calls.Load() > 3+int32(QueuePerWorker) {
		t.Errorf("%d calls after the error, want the queue dropped", calls.Load())
	}
	if dropped.Load() == 0 {
		t.Error("no done callback saw the error")
	}
}

// TestTableBoundedAndExpiring feeds many URLs through the rate-limit
// table: it stays within its budget, expired entries leave as it goes,
// and tried.tsv is compacted while running.
func TestTableBoundedAndExpiring(t *testing.T) {
	const budget = 64 << 10
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := newDownloader(t, Config{MaxState: budget, Now: clk.Now, OncePer: time.Minute})
	ctx := context.Background()
	maxBytes, maxEntries := int64(0), 0
	// Phase one: the clock moves 30 s every 100 URLs, so that entries
	// expire (a minute) before the budget is reached. Phase two: the
	// clock stands, and the budget evicts.
	for i := range 5000 {
		// Loopback URLs: denied at the dialer, no connection.
		if _, err := d.Handle(ctx, target(t, fmt.Sprintf("http://127.0.0.9/u%06d/x", i))); err != nil {
			t.Fatal(err)
		}
		s := d.Snapshot()
		maxBytes, maxEntries = max(maxBytes, s.StateBytes), max(maxEntries, s.StateEntries)
		if i < 2500 && i%100 == 99 {
			clk.Add(30 * time.Second)
		}
		if i == 2499 && (s.Expired == 0 || s.Evicted != 0) {
			t.Errorf("after phase one: %d expired, %d evicted; want expiries only", s.Expired, s.Evicted)
		}
	}
	s := d.Snapshot()
	if maxBytes > budget || maxEntries > budget/EntryOverhead {
		t.Errorf("table reached %d bytes, %d entries; budget %d bytes", maxBytes, maxEntries, budget)
	}
	if s.Evicted == 0 || s.Compactions == 0 || s.Denied != 5000 {
		t.Errorf("stats %+v: want evictions, compactions and 5000 denials", s)
	}
	lines := countLines(t, filepath.Join(d.cfg.Dir, "tried.tsv"))
	if lines > 2*s.StateEntries+compactSlack {
		t.Errorf("tried.tsv has %d lines for %d entries, want at most %d", lines, s.StateEntries, 2*s.StateEntries+compactSlack)
	}
	// A URL still in the table is skipped; an evicted one is not.
	last, err := d.Handle(ctx, target(t, "http://127.0.0.9/u004999/x"))
	if err != nil || last.Kind != KindSkipped {
		t.Errorf("the last URL again: %s (%v), want skipped", last.Kind, err)
	}
	first, err := d.Handle(ctx, target(t, "http://127.0.0.9/u002500/x"))
	if err != nil || first.Kind != KindDenied {
		t.Errorf("the first URL again: %s (%v), want tried again (denied)", first.Kind, err)
	}
	// A restart reads the table back within the budget.
	d.Close()
	d2 := newDownloader(t, Config{Dir: d.cfg.Dir, MaxState: budget, Now: clk.Now, OncePer: time.Minute})
	if r, _ := d2.Handle(ctx, target(t, "http://127.0.0.9/u004998/x")); r.Kind != KindSkipped {
		t.Errorf("after restart: %s, want skipped", r.Kind)
	}
	if s := d2.Snapshot(); s.StateBytes > budget {
		t.Errorf("after restart the table has %d bytes, budget %d", s.StateBytes, budget)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}

// TestURLsPerPayloadCapped: a payload with 90 URLs gives the cap's worth,
// and the rest are counted.
func TestURLsPerPayloadCapped(t *testing.T) {
	var sb strings.Builder
	for i := range 90 {
		fmt.Fprintf(&sb, "wget http://203.0.113.5/b%d;", i)
	}
	line := `{"timestamp":"2026-11-25T11:03:32Z","event_type":"session","src_ip":"198.51.100.7","src_port":1,"dest_ip":"192.0.2.1","dest_port":23,"payload":"` +
		base64.StdEncoding.EncodeToString([]byte(sb.String())) + `"}`
	path := filepath.Join(t.TempDir(), "x.events.20261125-11.jsonl")
	if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cap := range []int{0, 5} {
		var st ScanStats
		n := 0
		if err := Scan(context.Background(), []string{path}, ScanConfig{MaxURLsPerPayload: cap}, &st, func(Target) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		want := cap
		if cap == 0 {
			want = DefaultMaxURLsPerPayload
		}
		if n != want || st.CutURLs != 90-want {
			t.Errorf("cap %d: %d URLs, %d cut; want %d and %d", cap, n, st.CutURLs, want, 90-want)
		}
	}
}

// TestTooLongURL: a URL over MaxURLBytes is refused without a fetch and
// without a table entry.
func TestTooLongURL(t *testing.T) {
	d := newDownloader(t, Config{})
	u := "http://127.0.0.1/" + strings.Repeat("a", MaxURLBytes)
	r, err := d.Handle(context.Background(), Target{Download: urls.Download{URL: u, Server: "127.0.0.1", Port: 80}})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Snapshot()
	if r.Kind != KindUnsupported || !errors.Is(r.Err, ErrURLTooLong) || s.TooLong != 1 || s.StateEntries != 0 {
		t.Errorf("long URL: %s %q, stats %+v", r.Kind, r.Status, s)
	}
}

// heapAfterGC returns the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestKafkaLongRunFlatMemory feeds 100,000 distinct URLs through Kafka
// (session events of 10 URLs each) to a Downloader with a small table
// budget: the table stays within its budget throughout, tried.tsv within
// its compaction bound, and the live heap after GC stays flat (its peak
// within flatHeapBound of its level after the first 20,000 URLs; with an
// unbounded table it grows by about 10 MiB). The URLs point
// at a loopback address that the policy refuses, so nothing is connected
// to: the test measures the downloader's state, not the fetches.
func TestKafkaLongRunFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 URLs")
	}
	const (
		total      = 100_000
		perRecord  = 10
		budget     = 256 << 10
		checkEvery = 20_000
		// flatHeapBound is the growth of the live heap allowed between the
		// first and the last sample: well below what 80,000 more URLs
		// would hold if the state grew with them (80,000 × ~150 bytes of
		// table alone, about 12 MiB).
		flatHeapBound = 4 << 20
	)
	topic := KafkaTopic("", "mem", "session")
	c := newKfake(t, kfake.SeedTopics(1, topic))
	addrs := c.ListenAddrs()
	var srcs []netip.Addr
	var lines [][]byte
	src := netip.MustParseAddr("198.51.100.9")
	for r := range total / perRecord {
		var sb strings.Builder
		for j := range perRecord {
			fmt.Fprintf(&sb, "wget http://127.0.0.9/m%07d/x; ", r*perRecord+j)
		}
		line, err := records.AppendSessionEvent(nil, &records.Session{
			Flow: records.Flow{Remote: netip.AddrPortFrom(src, 5), Local: netip.MustParseAddrPort("192.0.2.1:23"), Accepted: time.Unix(9, 0)},
			End:  time.Unix(10, 0), AppProto: "telnet", Payload: []byte(sb.String()),
		})
		if err != nil {
			t.Fatal(err)
		}
		srcs, lines = append(srcs, src), append(lines, line)
	}
	for i := 0; i < len(lines); i += 1000 {
		produce(t, addrs, topic, srcs[i:i+1000], lines[i:i+1000])
	}
	lines = nil

	d := newDownloader(t, Config{MaxState: budget})
	cons, err := NewConsumer(KafkaConfig{Brokers: addrs, Group: "mem", Topics: []string{topic},
		MaxPollRecords: 100, Workers: 4, PerHost: 4,
		// Small fetches, so that the client's read-ahead (50 MiB by
		// default) does not hide the downloader's heap.
		Opts: []kgo.Opt{kgo.FetchMaxBytes(256 << 10), kgo.FetchMaxPartitionBytes(256 << 10), kgo.MaxConcurrentFetches(1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		n       atomic.Int64
		mu      sync.Mutex
		samples []uint64
		worst   Stats
	)
	check := make(chan struct{}, 1)
	runErr := make(chan error, 1)
	go func() {
		runErr <- cons.Run(ctx, func(ctx context.Context, tg Target) error {
			r, err := d.Handle(ctx, tg)
			if err != nil {
				return err
			}
			if r.Kind != KindDenied {
				return fmt.Errorf("%s: %s %s, want denied", tg.URL, r.Kind, r.Status)
			}
			if k := n.Add(1); k%checkEvery == 0 {
				check <- struct{}{}
			}
			return nil
		})
	}()
	for len(samples) < total/checkEvery {
		select {
		case err := <-runErr:
			t.Fatalf("Run ended early: %v", err)
		case <-check:
		case <-time.After(2 * time.Minute):
			t.Fatalf("stuck after %d URLs", n.Load())
		}
		s := d.Snapshot()
		mu.Lock()
		samples = append(samples, heapAfterGC())
		if s.StateBytes > worst.StateBytes {
			worst.StateBytes = s.StateBytes
		}
		worst.StateEntries = max(worst.StateEntries, s.StateEntries)
		mu.Unlock()
	}
	cancel()
	<-runErr
	s := d.Snapshot()
	t.Logf("%d URLs: heap after GC every %d URLs: %v bytes; table %d entries, %d bytes (budget %d); evicted %d, compactions %d",
		n.Load(), checkEvery, samples, s.StateEntries, s.StateBytes, budget, s.Evicted, s.Compactions)
	if n.Load() < total {
		t.Errorf("handled %d URLs, want %d", n.Load(), total)
	}
	if worst.StateBytes > budget || worst.StateEntries > budget/EntryOverhead {
		t.Errorf("table reached %d bytes, %d entries; budget %d bytes", worst.StateBytes, worst.StateEntries, budget)
	}
	if s.Evicted < total-budget/EntryOverhead {
		t.Errorf("evicted %d, want at least %d", s.Evicted, total-budget/EntryOverhead)
	}
	if lines := countLines(t, filepath.Join(d.cfg.Dir, "tried.tsv")); lines > 2*s.StateEntries+compactSlack {
		t.Errorf("tried.tsv has %d lines for %d entries", lines, s.StateEntries)
	}
	peak := slices.Max(samples)
	if growth := int64(peak) - int64(samples[0]); growth > flatHeapBound {
		t.Errorf("live heap grew by %d bytes from %d URLs to its peak, want at most %d", growth, checkEvery, flatHeapBound)
	}
	if cons.Stats.CutURLs != 0 || cons.Stats.URLs < total {
		t.Errorf("consumer stats %+v", cons.Stats)
	}
}
