package assemble

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestExampleUnflushedWarning: without --flush-at-eof the example logs
// leave records unwritten (as the original does); the run counts them
// exactly (as many as the flush writes on top) and says so in a WARN line
// that names --flush-at-eof, while the output and the other counters stay
// those of the original's run.
func TestExampleUnflushedWarning(t *testing.T) {
	dir := exampleLogs(t)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, nil))
	var cps []CheckpointStats
	var st Stats
	sink := &capture{}
	cfg := Config{Dir: dir, Tag: "test", Start: exampleStart, Logger: log,
		OnCheckpoint: func(c CheckpointStats) { cps = append(cps, c) }}
	if err := Run(context.Background(), cfg, sink, &st); err != nil {
		t.Fatal(err)
	}
	var flushed Stats
	if err := Run(context.Background(), Config{Dir: dir, Tag: "test", Start: exampleStart, FlushAtEOF: true}, &capture{}, &flushed); err != nil {
		t.Fatal(err)
	}
	t.Logf("without flush %+v", st)
	t.Logf("with flush %+v", flushed)
	if len(sink.batches) != 1 || len(cps) != 1 || st.Batches != 1 || st.Records != uint64(len(sink.batches[0])) || st.Records != uint64(cps[0].Records) {
		t.Fatalf("batches %d, checkpoints %+v, stats %+v: want the original's single batch", len(sink.batches), cps, st)
	}
	if st.UnflushedRecords == 0 || st.Records+st.UnflushedRecords != flushed.Records {
		t.Fatalf("unflushed records = %d, written %d; the flush writes %d in all", st.UnflushedRecords, st.Records, flushed.Records)
	}
	if flushed.UnflushedRecords != 0 {
		t.Errorf("with the flush, unflushed records = %d", flushed.UnflushedRecords)
	}
	var warn map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["level"] == "WARN" {
			if warn != nil {
				t.Errorf("second WARN line: %s", line)
			}
			warn = m
		}
	}
	if warn == nil {
		t.Fatalf("no WARN line in\n%s", logBuf.String())
	}
	t.Logf("warn: %v", warn)
	if msg, _ := warn["msg"].(string); !strings.Contains(msg, "--flush-at-eof") {
		t.Errorf("WARN %q does not name --flush-at-eof", msg)
	}
	if n, _ := warn["unflushed_records"].(float64); uint64(n) != st.UnflushedRecords {
		t.Errorf("WARN unflushed_records = %v, want %d", warn["unflushed_records"], st.UnflushedRecords)
	}
	if n, _ := warn["written_records"].(float64); uint64(n) != st.Records {
		t.Errorf("WARN written_records = %v, want %d", warn["written_records"], st.Records)
	}
}

// TestNothingUnflushedNoWarning: when the input ends after the last batch
// was written there is nothing to warn about.
func TestNothingUnflushedNoWarning(t *testing.T) {
	var logBuf bytes.Buffer
	var st Stats
	if err := Run(context.Background(), Config{Dir: t.TempDir(), Tag: "t", Start: h0,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, &capture{}, &st); err != nil {
		t.Fatal(err)
	}
	if st.UnflushedRecords != 0 || strings.Contains(logBuf.String(), "WARN") {
		t.Errorf("empty input: unflushed records %d, log %q", st.UnflushedRecords, logBuf.String())
	}
}

// TestFollowUnflushedCounted: a followed directory without --flush-at-eof
// stops at SIGTERM (ctx done) with the open batches unwritten; they are
// counted as the flush at that moment would write them, which is what the
// offline flush writes.
func TestFollowUnflushedCounted(t *testing.T) {
	src := exampleLogs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &capture{}
	var st Stats
	var logBuf bytes.Buffer
	now := func() time.Time { return time.Date(2021, 10, 13, 23, 20, 0, 0, time.UTC) }
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Dir: src, Tag: "test", Start: exampleStart, Follow: true, Poll: 5 * time.Millisecond, Now: now,
			Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, c, &st)
	}()
	c.waitBatches(t, 1, 30*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var off Stats
	if err := Run(context.Background(), Config{Dir: src, Tag: "test", Start: exampleStart, FlushAtEOF: true}, &capture{}, &off); err != nil {
		t.Fatal(err)
	}
	if len(c.batches) != 1 || st.UnflushedRecords == 0 || st.Records+st.UnflushedRecords != off.Records {
		t.Errorf("followed: %d batches, %d records written, %d unflushed; offline flush writes %d", len(c.batches), st.Records, st.UnflushedRecords, off.Records)
	}
	if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "--flush-at-eof") {
		t.Errorf("no WARN naming --flush-at-eof in\n%s", logBuf.String())
	}
}

// TestUnflushedCountReadError: without --flush-at-eof, input that the
// original never reads (an hour after the scamper log ended, here a .gz
// that is not gzip) must not fail the run or change its output: the
// count of the records left out stops there, and the WARN line says it
// is a lower bound.
func TestUnflushedCountReadError(t *testing.T) {
	src := exampleLogs(t)
	dir := t.TempDir()
	for _, f := range exampleLogFiles {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var clean Stats
	want := &capture{}
	if err := Run(context.Background(), Config{Dir: dir, Tag: "test", Start: exampleStart}, want, &clean); err != nil {
		t.Fatal(err)
	}
	bad := fileName(exampleStart.Add(2*time.Hour), "test", "raw") + ".gz"
	if err := os.WriteFile(filepath.Join(dir, bad), []byte("not gzip\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	var st Stats
	got := &capture{}
	err := Run(context.Background(), Config{Dir: dir, Tag: "test", Start: exampleStart,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, got, &st)
	if err != nil {
		t.Fatalf("Run: %v; the original stops before %s", err, bad)
	}
	if !reflect.DeepEqual(got.batches, want.batches) {
		t.Errorf("output changed: %d batches, want %d", len(got.batches), len(want.batches))
	}
	cut := st
	cut.UnflushedRecords = clean.UnflushedRecords
	if cut != clean || st.UnflushedRecords > clean.UnflushedRecords {
		t.Errorf("stats %+v, want those of the clean input %+v (unflushed records at most)", st, clean)
	}
	if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "at least") || !strings.Contains(logBuf.String(), bad) {
		t.Errorf("no WARN naming the lower bound and %s in\n%s", bad, logBuf.String())
	}
}
