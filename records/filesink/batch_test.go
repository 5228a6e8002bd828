package filesink

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// synBatch returns n SYNs at t (source ports 0 to n-1) and their SYN-ACKs'
// reply rows.
func synBatch(t time.Time, n int) ([]records.Packet, []records.Reply) {
	pkts := make([]records.Packet, n)
	reps := make([]records.Reply, n)
	for i := range pkts {
		pkts[i] = pkt(t, uint16(i), true)
		reps[i] = records.Reply{Time: t, Method: records.MethodSYNACK, UserID: uint32(i + 1), NumProbes: 1,
			Src: pkts[i].Dst, Dst: pkts[i].Src, SrcPort: 80, DstPort: uint16(i)}
	}
	return pkts, reps
}

// TestRecordsWritten checks that what Records hands over is written as
// Packet and Reply would write it: every raw row, SYN event and reply row,
// a call longer than BatchRecords split over several batches.
func TestRecordsWritten(t *testing.T) {
	const n = 2*BatchRecords + 7
	w, _ := newTestWriter(t, Config{FlushInterval: time.Hour})
	pkts, reps := synBatch(at(10, 0, 0, 0), n)
	w.Records(pkts, reps[:n-1])
	w.Records(nil, reps[n-1:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var raw, events, replies int
	for name, lines := range readDir(t, w.cfg.Dir) {
		switch {
		case strings.Contains(name, ".tcp.raw."):
			raw += len(lines) - 1
		case strings.Contains(name, ".tcp.scamper."):
			replies += len(lines) - 1
		case strings.HasSuffix(name, ".jsonl"):
			events += len(lines)
		}
	}
	st := w.Stats()
	if raw != n || events != n || replies != n {
		t.Errorf("on disk %d raw rows, %d syn events, %d reply rows; want %d each", raw, events, replies, n)
	}
	if st.PacketsWritten != n || st.RepliesWritten != n || st.EventsWritten != n {
		t.Errorf("written %d packets, %d replies, %d events; want %d each", st.PacketsWritten, st.RepliesWritten, st.EventsWritten, n)
	}
	if st.PacketQueue != 0 || st.ReplyQueue != 0 {
		t.Errorf("queue depths %d, %d after Close, want 0", st.PacketQueue, st.ReplyQueue)
	}
	w.Records(pkts[:3], reps[:2])
	if got := w.Stats().DropClosed; got != 5 {
		t.Errorf("DropClosed = %d after Records of 5 records on a closed Writer, want 5", got)
	}
}

// TestRecordsQueueFull checks the batch queue's bounds: PacketQueue /
// BatchRecords / 4 batches, the records of a call that finds none free
// queued one by one instead, the queued ones in the queue depths, and the
// records of a call over PacketQueue or ReplyQueue dropped and counted by
// queue; and PacketQueue packets queued in all, one by one and in batches.
func TestRecordsQueueFull(t *testing.T) {
	// The writer goroutine is not started, so the batches stay queued.
	w, err := newWriter(Config{Dir: t.TempDir(), PacketQueue: 8 * BatchRecords, ReplyQueue: 18})
	if err != nil {
		t.Fatal(err)
	}
	pkts, reps := synBatch(at(10, 0, 0, 0), 10)
	for range 5 {
		w.Records(pkts, reps[:4]) // two batches, then one by one
	}
	st := w.Stats()
	if st.DropPacketQueueFull != 10 || st.DropReplyQueueFull != 4 {
		t.Errorf("dropped %d packets, %d replies; want 10, 4 (the fifth call: over ReplyQueue)", st.DropPacketQueueFull, st.DropReplyQueueFull)
	}
	if st.PacketQueue != 40 || st.ReplyQueue != 16 || len(w.batches) != 2 || len(w.packets) != 20 {
		t.Errorf("queue depths %d, %d, %d batches, %d packets one by one; want 40, 16, 2, 20",
			st.PacketQueue, st.ReplyQueue, len(w.batches), len(w.packets))
	}
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.PacketsWritten != 40 || st.RepliesWritten != 16 {
		t.Errorf("written %d packets, %d replies; want the 40 and 16 queued", st.PacketsWritten, st.RepliesWritten)
	}

	// Packets queued one by one and in batches share PacketQueue.
	w, err = newWriter(Config{Dir: t.TempDir(), PacketQueue: 2 * BatchRecords})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2*BatchRecords - 15 {
		p := pkt(at(10, 0, 0, 0), uint16(i), false)
		w.Packet(&p)
	}
	w.Records(pkts, nil) // fits: 10 of the 15 left
	w.Records(pkts, nil) // does not
	p := pkt(at(10, 0, 0, 0), 1, false)
	for range 6 {
		w.Packet(&p) // 5 fit
	}
	st = w.Stats()
	if st.PacketQueue != 2*BatchRecords || st.DropPacketQueueFull != 11 {
		t.Errorf("queued %d, dropped %d; want %d, 11: one budget for both ways", st.PacketQueue, st.DropPacketQueueFull, 2*BatchRecords)
	}
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.PacketsWritten != 2*BatchRecords || st.PacketQueue != 0 {
		t.Errorf("written %d, queued %d after Close; want %d, 0", st.PacketsWritten, st.PacketQueue, 2*BatchRecords)
	}
}

// TestBacklogged checks that the writer says it is behind once more than
// three quarters of either queue's budget is queued, and no longer once
// it has written them.
func TestBacklogged(t *testing.T) {
	// The writer goroutine is not started, so the batches stay queued.
	w, err := newWriter(Config{Dir: t.TempDir(), PacketQueue: 4 * BatchRecords, ReplyQueue: 8 * BatchRecords})
	if err != nil {
		t.Fatal(err)
	}
	pkts, reps := synBatch(at(10, 0, 0, 0), BatchRecords)
	for i, want := range []bool{false, false, false, true} { // 25 %, 50 %, 75 %, 100 % of PacketQueue
		w.Records(pkts, nil)
		if got := w.Backlogged(); got != want {
			t.Errorf("%d of %d packets queued: Backlogged() = %v, want %v", (i+1)*BatchRecords, 4*BatchRecords, got, want)
		}
	}
	go w.loop()
	waitFor(t, "the queue written", func() bool { return !w.Backlogged() })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	w, err = newWriter(Config{Dir: t.TempDir(), PacketQueue: 8 * BatchRecords, ReplyQueue: 4 * BatchRecords})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Records(nil, reps)
	}
	if w.Backlogged() {
		t.Error("75 % of ReplyQueue queued: Backlogged() = true, want false")
	}
	w.Records(nil, reps)
	if !w.Backlogged() {
		t.Error("all of ReplyQueue queued: Backlogged() = false, want true")
	}
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRecordsAllocateNothing checks that a batch handed over, written and
// freed allocates nothing once the batch exists: the packet path's share
// and the writer's.
func TestRecordsAllocateNothing(t *testing.T) {
	w, err := newWriter(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		go w.loop()
		w.Close()
	})
	pkts, reps := synBatch(time.Now(), BatchRecords)
	allocs := testing.AllocsPerRun(100, func() {
		w.Records(pkts, reps)
		w.writeBatch(<-w.batches)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch of %d SYNs, want 0", allocs, BatchRecords)
	}
	if got := w.batchesMade.Load(); got != 1 {
		t.Errorf("%d batches made, want 1 (reused)", got)
	}
}

// BenchmarkHandoff is the packet path's share of handing a SYN's two rows
// (its raw row and its SYN-ACK's reply row) to the writer, from two
// producers at once as from two TUN readers: by Packet and Reply, and by
// Records in batches of BatchRecords. The queues are emptied between
// rounds without writing (off the clock), so that nothing is dropped and
// only the hand-off is timed.
func BenchmarkHandoff(b *testing.B) {
	const round = 1 << 13 // SYNs per round, over both producers
	for _, batched := range []bool{false, true} {
		name := "packet-reply"
		if batched {
			name = "records"
		}
		b.Run(name, func(b *testing.B) {
			w, err := newWriter(Config{Dir: b.TempDir(), PacketQueue: round, ReplyQueue: round})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				go w.loop()
				w.Close()
			})
			pkts, reps := synBatch(time.Now(), BatchRecords)
			b.ReportAllocs()
			syns := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range round / 2 / BatchRecords {
							if batched {
								w.Records(pkts, reps)
								continue
							}
							for j := range pkts {
								w.Packet(&pkts[j])
								w.Reply(&reps[j])
							}
						}
					}()
				}
				wg.Wait()
				syns += round
				b.StopTimer()
				emptyQueues(w)
				b.StartTimer()
			}
			if st := w.Stats(); st.DropPacketQueueFull+st.DropReplyQueueFull != 0 {
				b.Fatalf("%d records dropped: the hand-off timed is not the one that queues", st.DropPacketQueueFull+st.DropReplyQueueFull)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(syns), "ns/SYN")
		})
	}
}

// emptyQueues takes everything out of w's queues without writing it.
func emptyQueues(w *Writer) {
	for len(w.packets) > 0 {
		<-w.packets
		w.queuedPackets.Add(-1)
	}
	for len(w.replies) > 0 {
		<-w.replies
		w.queuedReplies.Add(-1)
	}
	for len(w.batches) > 0 {
		bt := <-w.batches
		w.queuedPackets.Add(-int64(len(bt.pkts)))
		w.queuedReplies.Add(-int64(len(bt.reps)))
		bt.pkts, bt.reps = bt.pkts[:0], bt.reps[:0]
		w.freeBatches <- bt
	}
}
