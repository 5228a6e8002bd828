package filesink

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/records"
)

// costSYN is a SYN as the front end records it: a Linux client's options
// (MSS, SACK permitted, timestamps, NOP, window scale), and its SYN-ACK.
func costSYN() (records.Packet, records.Reply) {
	p := pkt(at(10, 0, 0, 0), 40000, true)
	p.NumOptions = 5
	copy(p.Options[:], []uint8{2, 4, 8, 1, 3})
	p.MSS, p.WScale, p.IPID, p.Window = 1460, 7, 54321, 64240
	r := records.Reply{
		Time: p.Time, Method: records.MethodSYNACK, UserID: 7, NumProbes: 1,
		Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort,
	}
	return p, r
}

// BenchmarkRecordsPerSYN measures what the writer goroutine spends on each
// record of one SYN, from the record in memory to its bytes in the file's
// buffer (the write(2) of every full 256 KiB buffer included, to a file in
// the test's temporary directory): the raw row, the reply row (its
// SYN-ACK), the `syn` event, and the three together. B/SYN is the log bytes
// per SYN. The channel hand-off is BenchmarkEnqueue's.
func BenchmarkRecordsPerSYN(b *testing.B) {
	p, r := costSYN()
	rawB := len(records.AppendRawRow(nil, &p))
	replyB := len(records.AppendReplyRow(nil, &r))
	eventB := len(records.AppendSYNEvent(nil, &p))
	hour := hourOf(p.Time)
	cases := []struct {
		name  string
		bytes int
		omit  bool // Config.OmitSYNEvents
		write func(w *Writer, p *records.Packet, r *records.Reply)
	}{
		{"raw", rawB, false, func(w *Writer, p *records.Packet, _ *records.Reply) { w.writeRaw(w.tcpRaw, hour, p) }},
		{"reply", replyB, false, func(w *Writer, _ *records.Packet, r *records.Reply) { w.writeReply(r) }},
		{"syn-event", eventB, false, func(w *Writer, p *records.Packet, _ *records.Reply) { w.writeSYNEvent(hour, p) }},
		{"all", rawB + replyB + eventB, false, func(w *Writer, p *records.Packet, r *records.Reply) {
			w.writePacket(p)
			w.writeReply(r)
		}},
		{"all-omit-syn-events", rawB + replyB, true, func(w *Writer, p *records.Packet, r *records.Reply) {
			w.writePacket(p)
			w.writeReply(r)
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			w, err := newWriter(Config{Dir: b.TempDir(), OmitSYNEvents: tc.omit})
			if err != nil {
				b.Fatal(err)
			}
			p, r := p, r
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Seq, p.SrcPort = uint32(i), uint16(i)
				r.DstPort = p.SrcPort
				tc.write(w, &p, &r)
			}
			b.StopTimer()
			b.ReportMetric(float64(tc.bytes), "B/SYN")
			// The writer goroutine was never started: start it to close.
			go w.loop()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestRecordsPerSYNNoAllocs checks that writing the three records of a SYN
// allocates nothing once the file is open.
func TestRecordsPerSYNNoAllocs(t *testing.T) {
	w, err := newWriter(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, r := costSYN()
	p.Src = netip.MustParseAddr("2001:db8::7") // the longer family
	w.writePacket(&p)
	w.writeReply(&r)
	if n := testing.AllocsPerRun(1000, func() {
		p.Seq++
		w.writePacket(&p)
		w.writeReply(&r)
	}); n != 0 {
		t.Errorf("writePacket + writeReply of a SYN: %.1f allocations, want 0", n)
	}
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.PacketsWritten != 1002 || st.RepliesWritten != 1002 || st.EventsWritten != 1002 {
		t.Errorf("written packets %d, replies %d, events %d; want 1002 each", st.PacketsWritten, st.RepliesWritten, st.EventsWritten)
	}
}

// TestOmitSYNEvents checks that Config.OmitSYNEvents leaves out the `syn`
// events and nothing else: the raw rows, the reply rows and other events
// are written.
func TestOmitSYNEvents(t *testing.T) {
	for _, omit := range []bool{false, true} {
		dir := t.TempDir()
		w, err := New(Config{Dir: dir, OmitSYNEvents: omit})
		if err != nil {
			t.Fatal(err)
		}
		p, r := costSYN()
		w.Packet(&p)
		w.Reply(&r)
		ack := pkt(p.Time, 40001, false)
		w.Packet(&ack)
		w.Event(p.Time, []byte(`{"event_type":"stats"}`))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wantEvents := uint64(2)
		if omit {
			wantEvents = 1
		}
		st := w.Stats()
		if st.PacketsWritten != 2 || st.RepliesWritten != 1 || st.EventsWritten != wantEvents {
			t.Errorf("omit %v: written packets %d, replies %d, events %d; want 2, 1, %d",
				omit, st.PacketsWritten, st.RepliesWritten, st.EventsWritten, wantEvents)
		}
		var synLines int
		for name, lines := range readDir(t, dir) {
			if strings.HasSuffix(name, ".jsonl") {
				for _, l := range lines {
					if strings.Contains(l, `"event_type":"syn"`) {
						synLines++
					}
				}
			}
		}
		if want := int(wantEvents) - 1; synLines != want {
			t.Errorf("omit %v: %d syn event lines, want %d", omit, synLines, want)
		}
	}
}

// BenchmarkWriteBatch measures the writer goroutine's share of a batch of
// BatchRecords SYNs and their reply rows handed over by Records, per SYN:
// the batch taken from the queue, its three records per SYN written into
// the files' buffers (and every full buffer to its file), the batch freed.
// The hand-off is timed too (BenchmarkHandoff has it alone).
func BenchmarkWriteBatch(b *testing.B) {
	w, err := newWriter(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	p, r := costSYN()
	pkts := make([]records.Packet, BatchRecords)
	reps := make([]records.Reply, BatchRecords)
	for i := range pkts {
		pkts[i], reps[i] = p, r
		pkts[i].SrcPort, reps[i].DstPort = uint16(i), uint16(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += BatchRecords {
		for j := range pkts {
			pkts[j].Seq = uint32(i + j)
		}
		w.Records(pkts, reps)
		w.writeBatch(<-w.batches)
	}
	b.StopTimer()
	go w.loop()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
