package filesink

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/internal/syncbuf"
	"github.com/spoki-telescope/spoki/records"
)

// at returns 2026-11-25 at h:m:s.ms UTC.
func at(h, m, s, ms int) time.Time {
	return time.Date(2026, 11, 25, h, m, s, ms*int(time.Millisecond), time.UTC)
}

// pkt returns a TCP packet at t: a SYN when syn is set, else an ACK. The
// source port tells the rows apart.
func pkt(t time.Time, sport uint16, syn bool) records.Packet {
	p := records.Packet{
		Time: t, Proto: records.ProtoTCP, Flags: records.FlagACK, WScale: -1,
		Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.10"),
		TTL: 50, SrcPort: sport, DstPort: 80, Seq: 1, Window: 1024,
	}
	if syn {
		p.Flags = records.FlagSYN
	}
	return p
}

// readDir returns the files in dir and their lines.
func readDir(t *testing.T, dir string) map[string][]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end in a newline", e.Name())
		}
		files[e.Name()] = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	return files
}

// sports returns the source ports of the raw rows in lines, in order,
// checking that the header is the first line and only there.
func sports(t *testing.T, name string, lines []string) []string {
	t.Helper()
	if len(lines) == 0 || lines[0] != records.RawHeader {
		t.Fatalf("%s: first line %q, want the header", name, lines[0])
	}
	var out []string
	for _, l := range lines[1:] {
		if l == records.RawHeader {
			t.Errorf("%s: header repeated", name)
			continue
		}
		out = append(out, strings.Split(l, "|")[6])
	}
	return out
}

// newTestWriter returns a started Writer in a temporary directory, closed
// at cleanup, and the buffer its logger writes to.
func newTestWriter(t *testing.T, cfg Config) (*Writer, *syncbuf.Buffer) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	logs := &syncbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, logs
}

func TestRotation(t *testing.T) {
	w, logs := newTestWriter(t, Config{Tag: "test"})
	dir := w.cfg.Dir
	steps := []struct {
		name string
		p    records.Packet
	}{
		{"10:59 SYN", pkt(at(10, 59, 59, 900), 1, true)},
		{"11:00 SYN", pkt(at(11, 0, 0, 100), 2, true)},
		{"late for 10:00 (previous hour)", pkt(at(10, 59, 59, 950), 3, false)},
		{"09:15 (older: own file)", pkt(at(9, 15, 0, 0), 4, true)},
		{"11:30", pkt(at(11, 30, 0, 0), 5, false)},
		{"12:00 rotates 10:00 out", pkt(at(12, 0, 1, 0), 6, false)},
		{"10:30 after rotation (reopened)", pkt(at(10, 30, 0, 0), 7, false)},
		{"11:45 still previous hour", pkt(at(11, 45, 0, 0), 8, false)},
		{"09:20 again", pkt(at(9, 20, 0, 0), 9, false)},
	}
	for _, s := range steps {
		w.Packet(&s.p)
	}
	w.Reply(&records.Reply{Time: at(11, 0, 0, 200), Method: records.MethodSYNACK, UserID: 1, NumProbes: 1,
		Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.7"), SrcPort: 80, DstPort: 2})
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	files := readDir(t, dir)
	raw := func(h int) string {
		hour := at(h, 0, 0, 0)
		return hour.Format("2006-01-02.15:04:05") + ".test.spoki.tcp.raw." + itoa(hour.Unix()) + ".csv"
	}
	events := func(h int) string { return "test.events." + at(h, 0, 0, 0).Format("20060102-15") + ".jsonl" }
	scamper := "2026-11-25.11:00:00.test.spoki.tcp.scamper." + itoa(at(11, 0, 0, 0).Unix()) + ".csv"

	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	wantNames := []string{raw(9), raw(10), raw(11), raw(12), scamper, events(9), events(10), events(11)}
	sort.Strings(wantNames)
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("files =\n%q, want\n%q", names, wantNames)
	}

	rows := []struct {
		name string
		file string
		want []string
	}{
		{"09:00", raw(9), []string{"4", "9"}},
		{"10:00", raw(10), []string{"1", "3", "7"}},
		{"11:00", raw(11), []string{"2", "5", "8"}},
		{"12:00", raw(12), []string{"6"}},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			if got := sports(t, tc.file, files[tc.file]); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s rows (by sport) = %v, want %v", tc.file, got, tc.want)
			}
		})
	}
	if got := files[scamper]; len(got) != 2 || got[0] != records.ReplyHeader {
		t.Errorf("%s = %q, want header and one row", scamper, got)
	}
	for _, ev := range []struct {
		file  string
		sport float64
	}{{events(9), 4}, {events(10), 1}, {events(11), 2}} {
		lines := files[ev.file]
		if len(lines) != 1 {
			t.Fatalf("%s = %q, want one syn event", ev.file, lines)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
			t.Fatal(err)
		}
		if m["event_type"] != "syn" || m["src_port"] != ev.sport {
			t.Errorf("%s: event %v, want syn from port %v", ev.file, m, ev.sport)
		}
	}
	st := w.Stats()
	if st.PacketsWritten != 9 || st.RepliesWritten != 1 || st.EventsWritten != 3 || st.FilesOpen != 0 {
		t.Errorf("Stats() = %+v, want 9 packets, 1 reply, 3 events, no file open", st)
	}
	if n := strings.Count(logs.String(), "msg=rotate"); n != 1 || !strings.Contains(logs.String(), raw(10)) {
		t.Errorf("%d rotate log lines, want 1, for %s (the 12:00 row rotates it out):\n%s", n, raw(10), logs)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestAppendsToExistingFile(t *testing.T) {
	dir := t.TempDir()
	hour := at(10, 0, 0, 0)
	name := filepath.Join(dir, hour.Format("2006-01-02.15:04:05")+".untagged.spoki.tcp.raw."+itoa(hour.Unix())+".csv")
	old := records.RawHeader + "\n" + "1|1.2.3.4|5.6.7.8|0|1|tcp|99|2|0|0|||0|1|0|0|0|false|||||\n"
	if err := os.WriteFile(name, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	w, _ := newTestWriter(t, Config{Dir: dir})
	p := pkt(at(10, 5, 0, 0), 1, false)
	w.Packet(&p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := sports(t, name, readDir(t, dir)[filepath.Base(name)])
	if want := []string{"99", "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows = %v, want %v (appended, header once)", got, want)
	}
}

func TestCloseFlushesEverything(t *testing.T) {
	const producers, each = 8, 2000
	w, _ := newTestWriter(t, Config{FlushInterval: time.Hour, PacketQueue: producers * each})
	var wg sync.WaitGroup
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := pkt(at(10, 0, 0, i%1000), uint16(g), i%2 == 0)
				w.Packet(&p)
				if i%100 == 0 {
					w.Session(&records.Session{Flow: records.Flow{Accepted: p.Time,
						Remote: netip.AddrPortFrom(p.Src, p.SrcPort), Local: netip.AddrPortFrom(p.Dst, 80)},
						End: p.Time, AppProto: "http"})
					w.Event(p.Time, []byte(`{"event_type":"x"}`))
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := readDir(t, w.cfg.Dir)
	var rawRows, eventLines int
	for name, lines := range files {
		switch {
		case strings.Contains(name, ".tcp.raw."):
			rawRows += len(lines) - 1
		case strings.HasSuffix(name, ".jsonl"):
			eventLines += len(lines)
		}
	}
	st := w.Stats()
	wantEvents := producers*each/2 + 2*producers*each/100
	if rawRows != producers*each || st.PacketsWritten != producers*each {
		t.Errorf("raw rows on disk %d, PacketsWritten %d, want %d", rawRows, st.PacketsWritten, producers*each)
	}
	if eventLines != wantEvents || st.EventsWritten != uint64(wantEvents) {
		t.Errorf("event lines on disk %d, EventsWritten %d, want %d", eventLines, st.EventsWritten, wantEvents)
	}
	if st.DropPacketQueueFull+st.DropEventQueueFull+st.DropWriteError+st.DropClosed != 0 {
		t.Errorf("unexpected drops: %+v", st)
	}

	// After Close every enqueue counts a drop instead of panicking.
	p := pkt(at(10, 0, 0, 0), 1, true)
	w.Packet(&p)
	w.Reply(&records.Reply{})
	w.Session(&records.Session{})
	w.Event(time.Now(), []byte("{}"))
	if got := w.Stats().DropClosed; got != 4 {
		t.Errorf("DropClosed = %d, want 4", got)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

func TestQueueFullDropsNewest(t *testing.T) {
	// The writer goroutine is not started, so the queues fill up.
	w, err := newWriter(Config{Dir: t.TempDir(), PacketQueue: 4, ReplyQueue: 2, EventQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		p := pkt(at(10, 0, 0, 0), uint16(i), false)
		w.Packet(&p)
		w.Reply(&records.Reply{Time: p.Time})
		w.Event(p.Time, []byte("{}\n"))
	}
	st := w.Stats()
	want := []struct {
		name      string
		got, want uint64
	}{
		{"DropPacketQueueFull", st.DropPacketQueueFull, 6},
		{"DropReplyQueueFull", st.DropReplyQueueFull, 8},
		{"DropEventQueueFull", st.DropEventQueueFull, 9},
		{"PacketQueue", uint64(st.PacketQueue), 4},
	}
	for _, c := range want {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	go w.loop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st = w.Stats()
	if st.PacketsWritten != 4 || st.RepliesWritten != 2 || st.EventsWritten != 1 {
		t.Errorf("after Close: %+v, want the oldest 4 packets, 2 replies, 1 event written", st)
	}
	for name, lines := range readDir(t, w.cfg.Dir) {
		if strings.Contains(name, ".tcp.raw.") {
			if got := sports(t, name, lines); !reflect.DeepEqual(got, []string{"0", "1", "2", "3"}) {
				t.Errorf("rows %v, want the first four (newest dropped)", got)
			}
		}
	}
}

func TestProtocolsAndEvents(t *testing.T) {
	fields := func(dst []byte, port uint16, p []byte) []byte {
		return fmt.Appendf(dst, `"service":"test","port":%d,"len":%d`, port, len(p))
	}
	w, _ := newTestWriter(t, Config{Tag: "t", UDPFields: fields})
	udp := records.Packet{Time: at(10, 1, 0, 0), Proto: records.ProtoUDP, Src: netip.MustParseAddr("::1"),
		Dst: netip.MustParseAddr("::2"), SrcPort: 1, DstPort: 53, Payload: []byte{1}}
	icmp := records.Packet{Time: at(10, 2, 0, 0), Proto: records.ProtoICMP, Src: netip.MustParseAddr("1.1.1.1"),
		Dst: netip.MustParseAddr("2.2.2.2"), ICMPType: 8}
	bad := records.Packet{Time: at(10, 3, 0, 0), Proto: 99}
	w.Packet(&udp)
	w.Packet(&icmp)
	w.Packet(&bad)
	w.Session(&records.Session{Flow: records.Flow{Accepted: at(9, 59, 59, 0)}, End: at(10, 0, 5, 0),
		AppProto: "x", Detail: func() {}}) // a func cannot be encoded
	w.Event(at(10, 4, 0, 0), []byte(`{"event_type":"two_phase"}`))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := readDir(t, w.cfg.Dir)
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"udp", "2026-11-25.10:00:00.t.spoki.udp.raw." + itoa(at(10, 0, 0, 0).Unix()) + ".csv",
			[]string{records.UDPRawHeader, string(records.AppendRawRow(nil, &udp)[:len(records.AppendRawRow(nil, &udp))-1])}},
		{"icmp", "2026-11-25.10:00:00.t.spoki.icmp.raw." + itoa(at(10, 0, 0, 0).Unix()) + ".csv",
			[]string{records.ICMPRawHeader, string(records.AppendRawRow(nil, &icmp)[:len(records.AppendRawRow(nil, &icmp))-1])}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := files[tc.file]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %q, want %q", tc.file, got, tc.want)
			}
		})
	}
	// The udp and icmp events come from the packet queue, the line from
	// the event queue: their order in the file is not fixed.
	evs := files["t.events.20261125-10.jsonl"]
	slices.Sort(evs)
	wantEvs := []string{
		string(records.AppendUDPEvent(nil, &udp, []byte(`"service":"test","port":53,"len":1`))),
		string(records.AppendICMPEvent(nil, &icmp)),
		`{"event_type":"two_phase"}`, // newline added
	}
	for i := range wantEvs {
		wantEvs[i] = strings.TrimSuffix(wantEvs[i], "\n")
	}
	slices.Sort(wantEvs)
	if !reflect.DeepEqual(evs, wantEvs) {
		t.Errorf("events of 10:00 = %q, want %q", evs, wantEvs)
	}
	sess := files["t.events.20261125-09.jsonl"]
	if len(sess) != 1 || !strings.Contains(sess[0], `"event_type":"session"`) || !strings.Contains(sess[0], `"detail_error"`) {
		t.Errorf("session filed under the hour of Accepted with detail_error, got %q", sess)
	}
	st := w.Stats()
	if st.DropUnknownProto != 1 || st.EncodeErrors != 1 || st.PacketsWritten != 2 || st.EventsWritten != 4 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestWriteErrorsKeepDataAndResume(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	logs := &syncbuf.Buffer{}
	dir := t.TempDir()
	w, err := newWriter(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.retry = 0
	// Driven by hand: no writer goroutine.
	p := pkt(at(10, 0, 0, 0), 1, false)
	w.writePacket(&p)
	f := w.tcpRaw.cur
	real := f.f
	f.f = full // the disk is full
	for i := 2; i <= 3; i++ {
		p := pkt(at(10, 0, 0, 0), uint16(i), false)
		w.writePacket(&p)
		w.flushAll()
	}
	st := w.Stats()
	if st.WriteErrors != 2 || st.PacketsWritten != 0 || st.DropWriteError != 0 {
		t.Errorf("while full: %+v, want 2 write errors, nothing written or dropped", st)
	}
	if n := strings.Count(logs.String(), "write failed"); n != 1 {
		t.Errorf("%d 'write failed' log lines, want 1 per minute:\n%s", n, logs)
	}
	f.f = real // room again
	w.flushAll()
	full.Close()
	if got := w.Stats().PacketsWritten; got != 3 {
		t.Errorf("PacketsWritten = %d after the disk has room, want 3", got)
	}
	if !strings.Contains(logs.String(), "write resumed") {
		t.Errorf("no 'write resumed' log:\n%s", logs)
	}

	// A vanished directory: rows are dropped and counted, then writing resumes.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p = pkt(at(11, 0, 0, 0), 4, true)
	w.writePacket(&p)
	if got := w.Stats().DropWriteError; got != 2 {
		t.Errorf("DropWriteError = %d, want 2 (row and syn event)", got)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.writePacket(&p)
	if err := w.closeAll(); err != nil {
		t.Fatalf("closeAll() = %v", err)
	}
	if got := sports(t, "11:00", readDir(t, dir)["2026-11-25.11:00:00.untagged.spoki.tcp.raw."+itoa(at(11, 0, 0, 0).Unix())+".csv"]); !reflect.DeepEqual(got, []string{"4"}) {
		t.Errorf("11:00 rows %v, want [4]", got)
	}
}

func TestFlushIntervalMakesRowsTailable(t *testing.T) {
	w, _ := newTestWriter(t, Config{FlushInterval: 20 * time.Millisecond})
	p := pkt(at(10, 0, 0, 0), 1, false)
	w.Packet(&p)
	deadline := time.Now().Add(5 * time.Second)
	for w.Stats().PacketsWritten != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("row not written within 5s without Close: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for name, lines := range readDir(t, w.cfg.Dir) {
		if got := sports(t, name, lines); !reflect.DeepEqual(got, []string{"1"}) {
			t.Errorf("%s rows %v, want [1]", name, got)
		}
	}
}

// TestCloseStopsGoroutines checks that Close leaves no goroutine behind:
// the writer's, and the compressor's when compression or Keep is on.
func TestCloseStopsGoroutines(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"writer", Config{}},
		{"writer and maintenance", Config{Compress: true, Keep: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			cfg := tc.cfg
			cfg.Dir = t.TempDir()
			w, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for i := 0; runtime.NumGoroutine() > before; i++ {
				if i == 100 {
					t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing dir", Config{Dir: filepath.Join(t.TempDir(), "nope")}},
		{"not a dir", Config{Dir: file}},
		{"tag with slash", Config{Dir: t.TempDir(), Tag: "a/b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if w, err := New(tc.cfg); err == nil {
				w.Close()
				t.Errorf("New(%+v) error = nil, want an error", tc.cfg)
			}
		})
	}
}

// BenchmarkWriterPackets measures the writer goroutine end to end: SYNs
// (a raw row and a syn event each) queued without drops, written, closed.
func BenchmarkWriterPackets(b *testing.B) {
	w, err := New(Config{Dir: b.TempDir(), PacketQueue: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	p := pkt(at(10, 0, 0, 0), 40000, true)
	p.NumOptions, p.Options[0], p.Options[1], p.Options[2] = 3, 2, 4, 8
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p.Seq = uint32(i)
		// Blocking, to measure the writer rather than drops.
		w.queuedPackets.Add(1)
		w.packets <- p
		w.notify(false)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	if st := w.Stats(); st.PacketsWritten != uint64(b.N) {
		b.Fatalf("PacketsWritten = %d, want %d", st.PacketsWritten, b.N)
	}
}

// BenchmarkEnqueue measures the packet-path cost of Packet from parallel
// producers (drops included when the writer falls behind).
func BenchmarkEnqueue(b *testing.B) {
	w, err := New(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := pkt(at(10, 0, 0, 0), 40000, false)
		for pb.Next() {
			w.Packet(&p)
		}
	})
}
