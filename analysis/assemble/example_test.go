package assemble

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

var exampleStart = time.Date(2021, 10, 13, 21, 0, 0, 0, time.UTC)

// runExample assembles the example logs into a temporary directory.
func runExample(t *testing.T, flush bool) (rounds []RoundStats, cps []CheckpointStats, sink *FileSink, st Stats) {
	t.Helper()
	dir := exampleLogs(t)
	sink = &FileSink{Dir: t.TempDir(), Tag: "test"}
	cfg := Config{
		Dir: dir, Tag: "test", Start: exampleStart, FlushAtEOF: flush,
		OnRound:      func(r RoundStats) { rounds = append(rounds, r) },
		OnCheckpoint: func(c CheckpointStats) { cps = append(cps, c) },
	}
	if err := Run(context.Background(), cfg, sink, &st); err != nil {
		t.Fatal(err)
	}
	return rounds, cps, sink, st
}

func readGz(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExampleGoldenFigures(t *testing.T) {
	rounds, cps, sink, st := runExample(t, false)
	t.Logf("rounds %+v", rounds)
	t.Logf("checkpoints %+v", cps)
	t.Logf("stats %+v", st)
	want := []RoundStats{
		{Round: 0, Emitted: 4387, Unprobed: 2681, Confirmed: 1706, Kept: 682},
		{Round: 1, Emitted: 4583, Unprobed: 2810, Confirmed: 1773, Kept: 1398},
	}
	if len(rounds) != len(want) {
		t.Fatalf("got %d rounds, want %d (the original blocks in round 2)", len(rounds), len(want))
	}
	for i := range want {
		if rounds[i] != want[i] {
			t.Errorf("round %d = %+v, want %+v", i, rounds[i], want[i])
		}
	}
	if len(cps) != 1 || cps[0].Batch != 0 || cps[0].Repeated != 13 {
		t.Errorf("checkpoints = %+v, want one checkpoint(0) with 13 repeated connections", cps)
	}
	if len(sink.Written) != 1 || filepath.Base(sink.Written[0]) != "test-events-20211013-210436.json.gz" {
		t.Fatalf("files = %v, want test-events-20211013-210436.json.gz", sink.Written)
	}
	out := readGz(t, sink.Written[0])
	if n := bytes.Count(out, []byte{'\n'}); n != cps[0].Records {
		t.Errorf("file has %d lines, want %d", n, cps[0].Records)
	}
	var evil string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(line, "7767657420687474703a2f2f3134312e32322e32382e33352f6576696c") {
			evil = line
		}
	}
	if evil == "" {
		t.Fatal("no record carries the wget payload of 84.46.0.125")
	}
	t.Logf("evil: %s", evil)
}

func TestExampleFlushAtEOF(t *testing.T) {
	_, cps, sink, st := runExample(t, true)
	if len(sink.Written) != 2 || filepath.Base(sink.Written[0]) != "test-events-20211013-210436.json.gz" {
		t.Fatalf("files = %v, want batch 0 and batch 1", sink.Written)
	}
	last := cps[len(cps)-1]
	if !last.Final || last.Batch != 1 || last.Records == 0 {
		t.Errorf("last checkpoint = %+v, want the final one of batch 1", last)
	}
	// Everything read went somewhere: 1398 still unconfirmed at the end
	// are dropped by the flush.
	if st.Confirmed+st.Unprobed != 10368-1398 {
		t.Errorf("events passed on = %d, want %d", st.Confirmed+st.Unprobed, 10368-1398)
	}
}

// TestParserAgreesWithRecords checks the in-place parser against
// records.ParseRawRow and ParseReplyRow on every example row.
func TestParserAgreesWithRecords(t *testing.T) {
	dir := exampleLogs(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	strs := make(interner)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if strings.Contains(f, ".raw.") {
			p := newRawParser([]byte(lines[0]), strs)
			for _, l := range lines[1:] {
				var ev event
				if err := p.parse([]byte(l), &ev); err != nil {
					t.Fatalf("parse %q: %v", l, err)
				}
				want, err := records.ParseRawRow(l)
				if err != nil {
					t.Fatalf("records.ParseRawRow(%q): %v", l, err)
				}
				got := records.Packet{Src: ev.saddr, Dst: ev.daddr, IPID: ev.ipid, TTL: ev.ttl, SrcPort: ev.sport, DstPort: ev.dport,
					Seq: ev.snum, Ack: ev.anum, Window: ev.window, Probed: ev.probed, UserID: ev.userid, ProbeAck: ev.panum, ProbeSeq: ev.psnum}
				if got.Src != want.Src || got.Dst != want.Dst || got.IPID != want.IPID || got.TTL != want.TTL ||
					got.SrcPort != want.SrcPort || got.DstPort != want.DstPort || got.Seq != want.Seq || got.Ack != want.Ack ||
					got.Window != want.Window || got.Probed != want.Probed || got.UserID != want.UserID ||
					got.ProbeAck != want.ProbeAck || got.ProbeSeq != want.ProbeSeq || ev.ts != want.Time.Unix() ||
					ev.method != want.Method.String() || ev.nprobes != int64(want.NumProbes) ||
					ev.payload != hex.EncodeToString(want.Payload) ||
					(ev.flags&flagSYN != 0) != (want.Flags&records.FlagSYN != 0) || (ev.flags&flagACK != 0) != (want.Flags&records.FlagACK != 0) ||
					(ev.flags&flagRST != 0) != (want.Flags&records.FlagRST != 0) || (ev.flags&flagFIN != 0) != (want.Flags&records.FlagFIN != 0) {
					t.Fatalf("row %q: got %+v, want %+v", l, ev, want)
				}
				// The options column survives as logged.
				if row := string(records.AppendRawRow(nil, &want)); strings.Split(row, "|")[10] != ev.options {
					t.Fatalf("row %q: options %q, records writes %q", l, ev.options, strings.Split(row, "|")[10])
				}
			}
			continue
		}
		p := newConParser([]byte(lines[0]), strs)
		for _, l := range lines[1:] {
			var c confirmation
			if err := p.parse([]byte(l), &c); err != nil {
				t.Fatalf("parse %q: %v", l, err)
			}
			want, err := records.ParseReplyRow(l)
			if err != nil {
				t.Fatal(err)
			}
			if c.us != want.Time.UnixMicro() || c.src != want.Src || c.dst != want.Dst || c.sport != want.SrcPort ||
				c.dport != want.DstPort || c.userid != want.UserID || c.method != want.Method.String() {
				t.Fatalf("row %q: got %+v, want %+v", l, c, want)
			}
		}
	}
}

// TestFollow tails a directory into which the second hour's files arrive
// while assemble runs; the batch 0 file must appear as the checkpoint
// passes, and the flush at SIGTERM (ctx done) must give the same output as
// the offline run.
func TestFollow(t *testing.T) {
	src := exampleLogs(t)
	dir := t.TempDir()
	cp := func(name string) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "."+name)
		os.WriteFile(tmp, b, 0o644)
		os.Rename(tmp, filepath.Join(dir, name))
	}
	cp("2021-10-13.21:00:00.test.spoki.tcp.raw.1634158800.csv")
	cp("2021-10-13.21:00:00.test.spoki.tcp.scamper.1634158800.csv")
	var mu sync.Mutex
	now := time.Date(2021, 10, 13, 22, 0, 30, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &capture{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Dir: dir, Tag: "test", Start: exampleStart, Follow: true, FlushAtEOF: true,
			Poll: 5 * time.Millisecond, Now: clock}, c, nil)
	}()
	time.Sleep(50 * time.Millisecond)
	cp("2021-10-13.22:00:00.test.spoki.tcp.raw.1634162400.csv")
	cp("2021-10-13.22:00:00.test.spoki.tcp.scamper.1634162400.csv")
	mu.Lock()
	now = time.Date(2021, 10, 13, 23, 20, 0, 0, time.UTC)
	mu.Unlock()
	c.waitBatches(t, 1, 10*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	off := &capture{}
	if err := Run(context.Background(), Config{Dir: src, Tag: "test", Start: exampleStart, FlushAtEOF: true}, off, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.batches) != 2 || len(off.batches) != 2 {
		t.Fatalf("follow wrote %d batches, offline %d, want 2", len(c.batches), len(off.batches))
	}
	for i := range off.batches {
		if strings.Join(c.batches[i], "\n") != strings.Join(off.batches[i], "\n") {
			t.Errorf("batch %d differs between follow and offline", i)
		}
	}
}
