package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/analysis/assemble"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// Every broker here is franz-go's in-process kfake cluster on loopback.

// pairKey names a two-phase pair as both tools report it.
type pairKey struct {
	src, dst       netip.Addr
	dport          uint16
	sport1, sport2 uint16
}

func (k pairKey) String() string {
	return fmt.Sprintf("%s:%d/%d→%s:%d", k.src, k.sport1, k.sport2, k.dst, k.dport)
}

// telescope is one vantage point's generated SYNs, in time order.
type telescope struct {
	tag     string
	syns    []records.Packet
	planted []pairKey
}

// The workload spans span seconds of packet time, from base; the phase
// timeout is the default 600 s.
const (
	span       = 2400
	partitions = 8
	timeoutSec = 600
)

// synCount is the number of SYNs per telescope: SPOKI_TWOPHASE_SYNS, or
// what the machine handles in a minute or two (less under the race
// detector, which slows every record down).
func synCount(t *testing.T) int {
	if s := os.Getenv("SPOKI_TWOPHASE_SYNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SPOKI_TWOPHASE_SYNS=%q", s)
		}
		return n
	}
	if raceEnabled {
		return 20_000
	}
	return 300_000
}

// generate makes a telescope's SYNs: irregular SYNs (no options, TTL 241,
// IP ID 54321) from one-off spoofed sources, most answered; regular SYNs
// from other one-off sources; planted pairs (an answered irregular SYN,
// then within the timeout a regular SYN from the same source to the same
// address and port); and near misses that are no pair: the second SYN
// after the timeout, or a phase one that was never answered.
func generate(idx, n, nPairs int, base time.Time, rng *rand.Rand) telescope {
	tel := telescope{tag: "vp" + strconv.Itoa(idx)}
	prefix := [3][3]byte{{198, 51, 100}, {203, 0, 113}, {192, 0, 2}}[idx]
	dst := func() netip.Addr {
		return netip.AddrFrom4([4]byte{prefix[0], prefix[1], prefix[2], byte(1 + rng.IntN(254))})
	}
	ports := []uint16{22, 23, 80, 443, 2323, 8080, 8443, 5555}
	uid := uint32(1)
	seq := rng.Uint32()
	mk := func(src, d netip.Addr, sport, dport uint16, at time.Time, irregular, answered bool) records.Packet {
		seq++
		p := records.Packet{Time: at, Src: src, Dst: d, SrcPort: sport, DstPort: dport, Proto: records.ProtoTCP,
			Flags: records.FlagSYN, Seq: seq, Window: 65535, WScale: -1}
		if irregular {
			p.TTL, p.IPID, p.Window = 241, 54321, 1024
		} else {
			p.TTL, p.IPID, p.MSS, p.WScale = 52, uint16(rng.Uint32()), 1460, 7
			p.Options = [records.MaxOptions]uint8{2, 4, 8, 1, 3}
			p.NumOptions = 5
		}
		if answered {
			p.Probed, p.Method, p.UserID, p.ProbeAck, p.NumProbes = true, records.MethodSYNACK, uid, seq+1, 1
			uid++
		}
		return p
	}
	at := func(sec float64) time.Time { return base.Add(time.Duration(sec * float64(time.Second))) }
	src := func(kind, i int) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(10 + 10*kind + idx), byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := range n {
		s := rng.Float64() * span
		switch r := rng.IntN(100); {
		case r < 75:
			tel.syns = append(tel.syns, mk(src(0, i), dst(), uint16(1024+rng.IntN(60000)), ports[rng.IntN(len(ports))], at(s), true, true))
		case r < 80:
			tel.syns = append(tel.syns, mk(src(0, i), dst(), uint16(1024+rng.IntN(60000)), ports[rng.IntN(len(ports))], at(s), true, false))
		default:
			tel.syns = append(tel.syns, mk(src(1, i), dst(), uint16(1024+rng.IntN(60000)), ports[rng.IntN(len(ports))], at(s), false, true))
		}
	}
	for i := range nPairs {
		s, d, port := src(2, i), dst(), ports[rng.IntN(len(ports))]
		t1 := rng.Float64() * (span - timeoutSec)
		delay := 1 + rng.Float64()*(timeoutSec-12)
		sp1, sp2 := uint16(40000+rng.IntN(10000)), uint16(50000+rng.IntN(10000))
		switch i % 5 {
		case 3: // phase two too late: no pair
			delay = timeoutSec + 5 + rng.Float64()*100
			t1 = min(t1, span-delay-1)
			tel.syns = append(tel.syns, mk(s, d, sp1, port, at(t1), true, true), mk(s, d, sp2, port, at(t1+delay), false, true))
		case 4: // phase one never answered: no pair
			tel.syns = append(tel.syns, mk(s, d, sp1, port, at(t1), true, false), mk(s, d, sp2, port, at(t1+delay), false, true))
		default:
			tel.syns = append(tel.syns, mk(s, d, sp1, port, at(t1), true, true), mk(s, d, sp2, port, at(t1+delay), false, true))
			tel.planted = append(tel.planted, pairKey{s, d, port, sp1, sp2})
		}
	}
	slices.SortStableFunc(tel.syns, func(a, b records.Packet) int { return a.Time.Compare(b.Time) })
	return tel
}

// publish sends syns through the telescope's own publisher, as `spoki run
// --kafka` does.
func publish(t *testing.T, addrs []string, tag string, syns []records.Packet) {
	t.Helper()
	p, err := kafkasink.New(kafkasink.Config{Brokers: addrs, Tag: tag, BufferRecords: len(syns) + 1, BufferBytes: 1 << 30,
		// The packets are hours old, and the timeout counts from their time.
		DeliveryTimeout: 48 * time.Hour, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range syns {
		if !p.PublishSYN(&syns[i]) {
			t.Fatalf("SYN %d refused: %+v", i, p.Stats())
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Published != uint64(len(syns)) {
		t.Fatalf("%s: published %+v, want %d", tag, s, len(syns))
	}
}

// running is a member running in its goroutine.
type running struct {
	m      *Member
	cancel context.CancelFunc
	done   chan error
}

func startMember(t *testing.T, addrs []string, name string) *running {
	t.Helper()
	m, err := New(Config{Brokers: addrs, Group: "detectors", Memory: 2 << 20, PollRecords: 2000,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("member", name),
		Opts:   []kgo.Opt{kgo.ClientID(name)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("member: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("member did not stop")
	}
}

// waitConsumed waits until the members together consumed want records.
func waitConsumed(t *testing.T, want uint64, ms ...*Member) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var n uint64
		for _, m := range ms {
			n += m.Stats().Consumed
		}
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			for _, m := range ms {
				t.Logf("member stats %+v", m.Stats())
			}
			t.Fatalf("consumed %d records, want %d", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAssigned waits until the members share all n partitions, each
// owning some.
func waitAssigned(t *testing.T, n int64, ms ...*Member) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var sum int64
		all := true
		for _, m := range ms {
			p := m.Stats().Partitions
			sum += p
			all = all && p > 0
		}
		if sum == n && all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members own %d partitions (each some: %v), want %d", sum, all, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readPairs reads the whole output topic and counts each pair.
func readPairs(t *testing.T, addrs []string, topic string) map[pairKey]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += max(o.Offset, 0) })
	got := map[pairKey]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for n := int64(0); n < want; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d two_phase events", n, want)
		}
		for _, r := range fs.Records() {
			n++
			var e struct {
				EventType string `json:"event_type"`
				SrcIP     string `json:"src_ip"`
				SrcPort   uint16 `json:"src_port"`
				DestIP    string `json:"dest_ip"`
				DestPort  uint16 `json:"dest_port"`
				PhaseOne  struct {
					SrcPort uint16 `json:"src_port"`
				} `json:"phase_one"`
			}
			if err := json.Unmarshal(r.Value, &e); err != nil || e.EventType != "two_phase" {
				t.Fatalf("output record %s: %v", r.Value, err)
			}
			if len(r.Headers) != 1 || r.Headers[0].Key != kafkasink.HostHeader || !strings.HasPrefix(string(r.Headers[0].Value), "vp") {
				t.Errorf("output headers %v, want the telescope's host", r.Headers)
			}
			got[pairKey{netip.MustParseAddr(e.SrcIP), netip.MustParseAddr(e.DestIP), e.DestPort, e.PhaseOne.SrcPort, e.SrcPort}]++
		}
	}
	return got
}

// pairSink collects assemble's two-phase records.
type pairSink struct {
	mu    sync.Mutex
	pairs map[pairKey]int
	err   error
}

func (s *pairSink) WriteBatch(_ int, recs []assemble.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		if tag := r.Tag(); tag != "two-phase" && tag != "two-phase (no ack)" {
			continue
		}
		var rec struct {
			ISYN struct {
				Trigger struct {
					Payload struct {
						Sport uint16 `json:"sport"`
					} `json:"payload"`
				} `json:"trigger"`
			} `json:"isyn"`
			RSYN struct {
				Trigger struct {
					Saddr   string `json:"saddr"`
					Daddr   string `json:"daddr"`
					Payload struct {
						Sport uint16 `json:"sport"`
						Dport uint16 `json:"dport"`
					} `json:"payload"`
				} `json:"trigger"`
			} `json:"rsyn"`
		}
		if err := json.Unmarshal(r.AppendJSON(nil), &rec); err != nil {
			s.err = err
			continue
		}
		src, err1 := netip.ParseAddr(rec.RSYN.Trigger.Saddr)
		dst, err2 := netip.ParseAddr(rec.RSYN.Trigger.Daddr)
		if err1 != nil || err2 != nil {
			s.err = fmt.Errorf("assemble record %s: addresses", r.AppendJSON(nil))
			continue
		}
		s.pairs[pairKey{src, dst, rec.RSYN.Trigger.Payload.Dport, rec.ISYN.Trigger.Payload.Sport, rec.RSYN.Trigger.Payload.Sport}]++
	}
	return nil
}

// assemblePairs writes the telescope's SYNs as `spoki run` logs them (raw
// rows and the SYN-ACKs' reply rows) and runs `spoki assemble
// --flush-at-eof` over them.
func assemblePairs(t *testing.T, tel telescope, base time.Time) map[pairKey]int {
	t.Helper()
	dir := t.TempDir()
	w, err := filesink.New(filesink.Config{Dir: dir, Tag: tel.tag, PacketQueue: len(tel.syns) + 1,
		ReplyQueue: len(tel.syns) + 1, OmitSYNEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range tel.syns {
		p := &tel.syns[i]
		w.Packet(p)
		if p.Probed {
			w.Reply(&records.Reply{Time: p.Time, Method: records.MethodSYNACK, UserID: p.UserID, NumProbes: 1,
				Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort})
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sink := &pairSink{pairs: map[pairKey]int{}}
	var st assemble.Stats
	cfg := assemble.Config{Dir: dir, Tag: tel.tag, Start: base, PhaseTimeout: timeoutSec * time.Second, FlushAtEOF: true}
	if err := assemble.Run(context.Background(), cfg, sink, &st); err != nil {
		t.Fatal(err)
	}
	if sink.err != nil {
		t.Fatal(sink.err)
	}
	if st.Rows != uint64(len(tel.syns)) {
		t.Fatalf("%s: assemble read %d rows, want %d (the file sink dropped some?)", tel.tag, st.Rows, len(tel.syns))
	}
	return sink.pairs
}

// TestTwoPhaseAcrossVantagePoints runs the detector group over three
// telescopes' `syn` topics: one member consumes the first third of the
// packet time, a second joins (a rebalance hands it half the partitions,
// whose windows it rebuilds from the topics), the first leaves after the
// second third (a rebalance hands everything to the second), and the
// second finishes. Every planted pair, several of them crossing each
// rebalance, is published exactly once, no near miss is, and the pairs
// are those `spoki assemble --flush-at-eof` finds in the same SYNs' logs.
func TestTwoPhaseAcrossVantagePoints(t *testing.T) {
	n := synCount(t)
	nPairs := max(50, n/500)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Hour)
	rng := rand.New(rand.NewPCG(16, 4))
	var tels []telescope
	var topics []string
	for i := range 3 {
		tels = append(tels, generate(i, n, nPairs, base, rng))
		topics = append(topics, kafkasink.Topic("", tels[i].tag, "syn"))
	}
	// The operator creates the output topic (brokers may not create topics).
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...),
		kfake.SeedTopics(partitions, kafkasink.Topic("", DefaultOutTag, "two_phase")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()

	// The three parts of packet time, and the planted pairs whose phases
	// lie in different parts: they cross a rebalance.
	cut := [4]time.Time{base, base.Add(span / 3 * time.Second), base.Add(2 * span / 3 * time.Second), base.Add(2 * span * time.Second)}
	part := func(at time.Time) int {
		for i := 1; i < 4; i++ {
			if at.Before(cut[i]) {
				return i - 1
			}
		}
		return 2
	}
	var produced [3]uint64
	publishPart := func(k int) {
		for _, tel := range tels {
			var syns []records.Packet
			for _, p := range tel.syns {
				if part(p.Time) == k {
					syns = append(syns, p)
				}
			}
			publish(t, addrs, tel.tag, syns)
			produced[k] += uint64(len(syns))
		}
	}
	planted := map[pairKey]bool{}
	crossing := 0
	for _, tel := range tels {
		times := map[pairKey][2]time.Time{}
		for _, p := range tel.syns {
			if p.Src.As4()[0] < 30 {
				continue
			}
			for _, k := range tel.planted {
				if k.src == p.Src {
					v := times[k]
					if p.SrcPort == k.sport1 {
						v[0] = p.Time
					} else {
						v[1] = p.Time
					}
					times[k] = v
				}
			}
		}
		for _, k := range tel.planted {
			planted[k] = true
			if v := times[k]; part(v[0]) != part(v[1]) {
				crossing++
			}
		}
	}
	t.Logf("%d SYNs in 3 telescopes, %d planted pairs (%d crossing a rebalance)", 3*n+3*2*nPairs, len(planted), crossing)
	if crossing == 0 {
		t.Fatal("no planted pair crosses a rebalance")
	}

	start := time.Now()
	publishPart(0)
	m1 := startMember(t, addrs, "member-1")
	waitConsumed(t, produced[0], m1.m)
	// The second member joins before the second third is published, so
	// that it takes over partitions whose phase ones member 1 saw.
	m2 := startMember(t, addrs, "member-2")
	waitAssigned(t, 3*partitions, m1.m, m2.m)
	publishPart(1)
	waitConsumed(t, produced[0]+produced[1], m1.m, m2.m)
	if m2.m.Stats().Consumed == 0 {
		t.Fatal("member 2 consumed nothing of the second third")
	}
	m1.stop(t)
	publishPart(2)
	waitConsumed(t, produced[0]+produced[1]+produced[2], m1.m, m2.m)
	m2.stop(t)
	s1, s2 := m1.m.Stats(), m2.m.Stats()
	t.Logf("member 1 %+v\nmember 2 %+v\n%d SYNs through the group in %v", s1, s2, produced[0]+produced[1]+produced[2], time.Since(start).Round(time.Millisecond))
	if s2.Rebuilds == 0 || s2.Replayed == 0 {
		t.Errorf("member 2 rebuilt %d windows from %d records: want a replay", s2.Rebuilds, s2.Replayed)
	}
	// Bounded: the rebuilds read the window before the hand-over, not the
	// topics from their start.
	if s2.Replayed >= produced[0]+produced[1] {
		t.Errorf("member 2 replayed %d records, the whole topics (%d) up to its last hand-over", s2.Replayed, produced[0]+produced[1])
	}
	if s1.Malformed+s2.Malformed != 0 || s1.PublishErrors+s2.PublishErrors != 0 || s1.CommitErrors+s2.CommitErrors != 0 {
		t.Errorf("malformed %d, publish errors %d, commit errors %d", s1.Malformed+s2.Malformed,
			s1.PublishErrors+s2.PublishErrors, s1.CommitErrors+s2.CommitErrors)
	}

	got := readPairs(t, addrs, kafkasink.Topic("", DefaultOutTag, "two_phase"))
	for k, c := range got {
		switch {
		case !planted[k]:
			t.Errorf("pair %v published but not planted", k)
		case c != 1:
			t.Errorf("pair %v published %d times", k, c)
		}
	}
	for k := range planted {
		if got[k] == 0 {
			t.Errorf("planted pair %v not published", k)
		}
	}
	if uint64(len(got)) != s1.Pairs+s2.Pairs {
		t.Errorf("%d pairs in the topic, members counted %d", len(got), s1.Pairs+s2.Pairs)
	}

	offline := map[pairKey]int{}
	for _, tel := range tels {
		for k, c := range assemblePairs(t, tel, base) {
			offline[k] += c
		}
	}
	if len(offline) != len(got) {
		t.Errorf("assemble found %d pairs, the group %d", len(offline), len(got))
	}
	for k := range got {
		if offline[k] == 0 {
			t.Errorf("pair %v: published, but assemble finds none", k)
		}
	}
	for k := range offline {
		if got[k] == 0 {
			t.Errorf("pair %v: assemble finds it, the group did not publish it", k)
		}
	}
}
