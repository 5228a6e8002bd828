package filesink

import (
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// udpAt returns a UDP packet at t from source port sport.
func udpAt(t time.Time, sport uint16) records.Packet {
	return records.Packet{Time: t, Proto: records.ProtoUDP, Src: netip.MustParseAddr("198.51.100.7"),
		Dst: netip.MustParseAddr("192.0.2.10"), TTL: 50, SrcPort: sport, DstPort: 53, WScale: -1}
}

// takenHook returns a Config.UDPFields that reports on the channel each
// UDP packet the writer goroutine writes: the moment the writer took it.
func takenHook() (func([]byte, uint16, []byte) []byte, chan struct{}) {
	taken := make(chan struct{}, 16)
	return func(dst []byte, _ uint16, _ []byte) []byte {
		taken <- struct{}{}
		return dst
	}, taken
}

// waitIdle waits until w's writer goroutine sleeps idle.
func waitIdle(t *testing.T, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !w.idle.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not go idle within 10s with its queues empty")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterWakesForRecord checks that the writer takes a record handed to
// it while it sleeps idle and one handed over while it polls (after a
// read's worth), with a flush tick an hour away: none waits for the tick.
func TestWriterWakesForRecord(t *testing.T) {
	hook, taken := takenHook()
	w, _ := newTestWriter(t, Config{FlushInterval: time.Hour, UDPFields: hook})
	takenWithin := func(what string) {
		t.Helper()
		select {
		case <-taken:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not taken within 10s (the flush tick is an hour away)", what)
		}
	}
	for i := range 3 {
		waitIdle(t, w)
		p := udpAt(time.Now(), uint16(i))
		w.Packet(&p)
		takenWithin("a packet to an idle writer")
		// A read's worth (pollMin): the writer polls after it, and the
		// next record wakes no one.
		pkts := make([]records.Packet, pollMin)
		for j := range pkts {
			pkts[j] = pkt(p.Time, uint16(j), false)
		}
		pkts[0] = p
		pkts[0].SrcPort += 100
		w.Records(pkts, nil)
		takenWithin("a full batch")
		p.SrcPort += 200
		w.Packet(&p)
		takenWithin("a packet to a polling writer")
	}
	waitIdle(t, w)
	e := []byte(`{"event_type":"x"}`)
	w.Event(time.Now(), e)
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().EventQueue != 0 || !w.idle.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("an event to an idle writer not taken within 10s: %+v", w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.PacketsWritten != 3*(pollMin+2) || st.EventsWritten != 3*3+1 {
		t.Errorf("written %d packets, %d events; want %d, 10", st.PacketsWritten, st.EventsWritten, 3*(pollMin+2))
	}
}

// TestRecordsAccountedUnderLoad hands a running writer more than its
// queues hold, from two producers at once as from two TUN readers, by
// Records, Packet, Reply and Event: by Close every record is written or
// counted as dropped for its full queue, and the queue depths are back to
// zero.
func TestRecordsAccountedUnderLoad(t *testing.T) {
	const producers, calls = 2, 300
	w, _ := newTestWriter(t, Config{PacketQueue: 4 * BatchRecords, ReplyQueue: 2 * BatchRecords, EventQueue: 8})
	var wg sync.WaitGroup
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts, reps := synBatch(time.Now(), BatchRecords)
			for i := range calls {
				w.Records(pkts, reps)
				p := pkt(time.Now(), uint16(g), false)
				w.Packet(&p)
				w.Reply(&reps[i%len(reps)])
				w.Event(time.Now(), []byte(`{"event_type":"x"}`))
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	t.Logf("dropped %d packets, %d replies, %d events for full queues", st.DropPacketQueueFull, st.DropReplyQueueFull, st.DropEventQueueFull)
	const handed = producers * calls
	if got := st.PacketsWritten + st.DropPacketQueueFull; got != handed*(BatchRecords+1) {
		t.Errorf("packets written %d + dropped %d = %d, want the %d handed over", st.PacketsWritten, st.DropPacketQueueFull, got, handed*(BatchRecords+1))
	}
	if got := st.RepliesWritten + st.DropReplyQueueFull; got != handed*(BatchRecords+1) {
		t.Errorf("replies written %d + dropped %d = %d, want the %d handed over", st.RepliesWritten, st.DropReplyQueueFull, got, handed*(BatchRecords+1))
	}
	if st.PacketQueue != 0 || st.ReplyQueue != 0 || st.EventQueue != 0 {
		t.Errorf("queue depths %d, %d, %d after Close, want 0", st.PacketQueue, st.ReplyQueue, st.EventQueue)
	}
	if st.DropWriteError != 0 || st.DropClosed != 0 {
		t.Errorf("dropped %d for write errors, %d for closed; want 0", st.DropWriteError, st.DropClosed)
	}
}

// TestBatchStraddlesHour checks that a batch whose records straddle an
// hour files each row by its own record's hour, in order.
func TestBatchStraddlesHour(t *testing.T) {
	w, _ := newTestWriter(t, Config{})
	times := []time.Time{at(10, 59, 59, 998), at(10, 59, 59, 999), at(11, 0, 0, 0), at(10, 59, 59, 999), at(11, 0, 0, 1)}
	var pkts []records.Packet
	var reps []records.Reply
	for i, tm := range times {
		p := pkt(tm, uint16(i), true)
		pkts = append(pkts, p)
		reps = append(reps, records.Reply{Time: tm, Method: records.MethodSYNACK, UserID: 1, NumProbes: 1,
			Src: p.Dst, Dst: p.Src, SrcPort: 80, DstPort: uint16(i)})
	}
	w.Records(pkts, reps)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := readDir(t, w.cfg.Dir)
	h10, h11 := itoa(at(10, 0, 0, 0).Unix()), itoa(at(11, 0, 0, 0).Unix())
	for _, c := range []struct {
		name string
		want []string
	}{
		{"2026-11-25.10:00:00.untagged.spoki.tcp.raw." + h10 + ".csv", []string{"0", "1", "3"}},
		{"2026-11-25.11:00:00.untagged.spoki.tcp.raw." + h11 + ".csv", []string{"2", "4"}},
	} {
		if got := sports(t, c.name, files[c.name]); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: rows of source ports %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		want int
	}{
		{"2026-11-25.10:00:00.untagged.spoki.tcp.scamper." + h10 + ".csv", 3 + 1},
		{"2026-11-25.11:00:00.untagged.spoki.tcp.scamper." + h11 + ".csv", 2 + 1},
		{"untagged.events.20261125-10.jsonl", 3},
		{"untagged.events.20261125-11.jsonl", 2},
	} {
		if got := len(files[c.name]); got != c.want {
			t.Errorf("%s: %d lines, want %d", c.name, got, c.want)
		}
	}
	var events []string
	for _, name := range []string{"untagged.events.20261125-10.jsonl", "untagged.events.20261125-11.jsonl"} {
		for _, l := range files[name] {
			i := strings.Index(l, `"src_port":`)
			if i < 0 {
				t.Fatalf("%s: no src_port in %s", name, l)
			}
			events = append(events, strings.SplitN(l[i+len(`"src_port":`):], ",", 2)[0])
		}
	}
	if want := []string{"0", "1", "3", "2", "4"}; !reflect.DeepEqual(events, want) {
		t.Errorf("syn events of source ports %v by file, want %v", events, want)
	}
}

// TestHandoffWakesBusyWriter checks when a hand-off wakes a writer that is
// not idle (it polls): not for a few records, but once the batch queue
// holds a quarter of its batches (many small reads), or a queue is past
// half its bound.
func TestHandoffWakesBusyWriter(t *testing.T) {
	// The writer goroutine is not started: the wake-ups stay in w.wake.
	w, err := newWriter(Config{Dir: t.TempDir(), ReplyQueue: 8})
	if err != nil {
		t.Fatal(err)
	}
	pkts, reps := synBatch(time.Now(), 1)
	for i := range w.wakeBatches - 1 {
		w.Records(pkts, nil)
		if len(w.wake) != 0 {
			t.Fatalf("woken by %d batches of one packet, want %d", i+1, w.wakeBatches)
		}
	}
	w.Records(pkts, nil)
	if len(w.wake) != 1 {
		t.Fatalf("not woken by %d batches (a quarter of %d)", w.wakeBatches, w.maxBatches)
	}
	emptyQueues(w)
	<-w.wake
	for range 4 {
		w.Reply(&reps[0])
	}
	if len(w.wake) != 0 {
		t.Fatal("woken by 4 replies, half the reply queue")
	}
	w.Reply(&reps[0])
	if len(w.wake) != 1 {
		t.Fatal("not woken by 5 replies, past half the reply queue")
	}
	emptyQueues(w)
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
