package telescope

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/stats"
)

// periodicHarness drives a statsLogger over fake sources with a fake
// clock and memory, and parses the lines it writes.
type periodicHarness struct {
	fake      *fakeSources
	sl        *statsLogger
	buf       bytes.Buffer
	at        time.Time
	heap, rss uint64
}

func newPeriodicHarness(quiet bool) *periodicHarness {
	h := &periodicHarness{fake: &fakeSources{}, at: time.Unix(1000, 0), heap: 10 << 20, rss: 36499456}
	h.sl = newStatsLogger(slog.New(slog.NewTextHandler(&h.buf, nil)), h.fake.sources(), quiet)
	h.sl.now = func() time.Time { return h.at }
	h.sl.mem = func() (uint64, uint64) { return h.heap, h.rss }
	h.sl.prev, h.sl.prevAt = h.sl.read(), h.at // the baseline, read with the fakes
	h.sl.heap = h.heap
	return h
}

// tick advances the clock by d and ticks; it returns the line's fields
// (nil when no line was written).
func (h *periodicHarness) tick(t *testing.T, d time.Duration) map[string]string {
	t.Helper()
	h.at = h.at.Add(d)
	h.buf.Reset()
	wrote := h.sl.tick()
	line := strings.TrimSpace(h.buf.String())
	if wrote != (line != "") {
		t.Fatalf("tick reported %v, wrote %q", wrote, line)
	}
	if !wrote {
		return nil
	}
	if !strings.Contains(line, "msg=stats ") || strings.Contains(line, "\n") {
		t.Fatalf("stats line %q", line)
	}
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// TestStatsPeriodicRates checks the periodic line: rates per second from
// the counters' growth over the interval, a loss only in an interval it
// moved, the gauges as they are, sizes in KiB/MiB, and no totals.
func TestStatsPeriodicRates(t *testing.T) {
	h := newPeriodicHarness(false)
	f := h.fake
	f.ns.PacketsIn, f.ns.SYNACKsSent, f.ns.DropConnLimit, f.ns.Active = 5000, 4000, 20, 7
	f.mux.Sessions = 30
	f.sink.DropEventQueueFull = 2
	line := h.tick(t, 2*time.Second)
	for k, want := range map[string]string{
		"packets/s": "2500", "synacks/s": "2000", "sessions/s": "15.0", "drops/s": "10.0",
		"drop_conn_limit/s": "10.0", "records_dropped/s": "1.00", "active": "7", "listeners": "0",
		"heap_live": "10.0MiB", "rss": "34.8MiB",
	} {
		if line[k] != want {
			t.Errorf("first line %s=%q, want %q (line %v)", k, line[k], want, line)
		}
	}
	for _, total := range []string{"packets_in", "synacks_out", "drops", "sessions", "drop_conn_limit", "records_dropped", "bytes_written"} {
		if _, ok := line[total]; ok {
			t.Errorf("the periodic line carries the total %s", total)
		}
	}

	// The next interval: only packets move, at 100/s; the losses of the
	// first interval are gone from the line, the gauge is as it is now.
	f.ns.PacketsIn += 6000
	f.ns.Active = 3
	line = h.tick(t, time.Minute)
	if line["packets/s"] != "100" || line["drops/s"] != "0" || line["synacks/s"] != "0" || line["active"] != "3" {
		t.Errorf("second line %v", line)
	}
	for _, k := range []string{"drop_conn_limit/s", "records_dropped/s"} {
		if _, ok := line[k]; ok {
			t.Errorf("second line shows %s, which did not move", k)
		}
	}
	// One loss in a minute still shows.
	f.ns.DropBadCookie++
	if line = h.tick(t, time.Minute); line["drop_bad_cookie/s"] != "0.02" || line["drops/s"] != "0.02" {
		t.Errorf("one drop in a minute: %v", line)
	}
}

// TestStatsPeriodicQuiet checks that, off a terminal, an interval in which
// nothing changed writes no line, and that any change (a counter, a gauge,
// the live heap as shown) writes one again, the RSS alone not; on a
// terminal every interval writes.
func TestStatsPeriodicQuiet(t *testing.T) {
	h := newPeriodicHarness(true)
	if h.tick(t, time.Minute) == nil {
		t.Fatalf("the first line is written even when idle")
	}
	if line := h.tick(t, time.Minute); line != nil {
		t.Errorf("idle interval wrote %v", line)
	}
	h.fake.ns.PacketsIn++
	if h.tick(t, time.Minute) == nil {
		t.Errorf("a packet in the interval wrote no line")
	}
	if line := h.tick(t, time.Minute); line != nil {
		t.Errorf("idle interval wrote %v", line)
	}
	h.fake.ns.Listeners = 4
	if line := h.tick(t, time.Minute); line == nil || line["listeners"] != "4" {
		t.Errorf("a gauge change: line %v", line)
	}
	h.heap += 1 << 20
	if line := h.tick(t, time.Minute); line == nil || line["heap_live"] != "11.0MiB" {
		t.Errorf("a heap change: line %v", line)
	}
	// The RSS of an idle process moves (garbage between collections, pages
	// returned): alone it writes no line, and the next line shows it.
	h.rss += 8 << 20
	if line := h.tick(t, time.Minute); line != nil {
		t.Errorf("the RSS alone moving wrote %v", line)
	}
	h.heap += 4096 // less than the line shows
	if line := h.tick(t, time.Minute); line != nil {
		t.Errorf("4 KiB more live heap wrote %v", line)
	}
	h.fake.ns.PacketsIn++
	if line := h.tick(t, time.Minute); line == nil || line["rss"] != "42.8MiB" {
		t.Errorf("the next line: %v, want rss=42.8MiB", line)
	}

	loud := newPeriodicHarness(false)
	for i := range 3 {
		if loud.tick(t, time.Second) == nil {
			t.Errorf("terminal: idle interval %d wrote no line", i)
		}
	}
}

// TestStatsFinalSizes checks that the final line spells the memory for
// people and that stats.ParseSize reads it back.
func TestStatsFinalSizes(t *testing.T) {
	var fake fakeSources
	line := lineValues(t, fake.sources(), "final")
	for _, k := range []string{"heap_live", "rss"} {
		v := line[k]
		if !strings.HasSuffix(v, "iB") && !strings.HasSuffix(v, "B") {
			t.Errorf("final %s=%q, want a size in KiB/MiB", k, v)
		}
		if n, ok := stats.ParseSize(v); !ok || n == 0 {
			t.Errorf("ParseSize(%q) = %d, %v", v, n, ok)
		}
	}
}

// fakeStatus records what a StatusLine is set to.
type fakeStatus struct {
	lines []string
	done  bool
}

func (f *fakeStatus) Set(line string) { f.lines = append(f.lines, line) }
func (f *fakeStatus) Done()           { f.done = true }

// TestStatsProgress checks --progress: each interval redraws the status
// line with the rates, the connections, the memory and the packets so
// far, and writes no stats line.
func TestStatsProgress(t *testing.T) {
	h := newPeriodicHarness(true)
	st := &fakeStatus{}
	h.sl.status = st
	h.sl.start = h.at
	h.fake.ns.PacketsIn, h.fake.ns.SYNACKsSent, h.fake.ns.Active = 3000, 1500, 2
	if line := h.tick(t, 3*time.Second); line != nil {
		t.Errorf("a stats line with --progress: %v", line)
	}
	h.fake.ns.PacketsIn += 10
	h.tick(t, time.Second) // nothing changed but the packets: redrawn anyway
	if len(st.lines) != 2 {
		t.Fatalf("status set %d times, want 2: %q", len(st.lines), st.lines)
	}
	for i, want := range []string{
		"1000 packets/s, 500 synacks/s, 0 sessions/s, 0 drops/s, 2 active, rss 34.8MiB, up 3s, 3000 packets",
		"10.0 packets/s, 0 synacks/s, 0 sessions/s, 0 drops/s, 2 active, rss 34.8MiB, up 4s, 3010 packets",
	} {
		if st.lines[i] != want {
			t.Errorf("status %d\n got %q\nwant %q", i, st.lines[i], want)
		}
	}
}
