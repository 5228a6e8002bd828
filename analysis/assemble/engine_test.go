package assemble

import (
	"bufio"
	"compress/gzip"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// writeLog writes one hour's raw and scamper files of genRows into dir.
func writeLog(t *testing.T, dir string, hour time.Time, raw, cons []genRow) {
	t.Helper()
	if err := writeRows(filepath.Join(dir, fileName(hour, "t", "raw")), records.RawHeader, raw, appendGenRaw); err != nil {
		t.Fatal(err)
	}
	if err := writeRows(filepath.Join(dir, fileName(hour, "t", "scamper")), records.ReplyHeader, cons, appendGenCon); err != nil {
		t.Fatal(err)
	}
}

var (
	gSrc = netip.MustParseAddr("192.0.2.1")
	gDst = netip.MustParseAddr("198.51.100.1")
)

// gsyn is a probed regular SYN at ms whose confirmation comes at confUs
// (0: none).
func gsyn(ms int64, sport uint16, userid uint32, confUs int64) genRow {
	return genRow{ms: ms, src: gSrc, dst: gDst, ttl: 64, sport: sport, dport: 80, snum: 1000, opts: []uint8{genOptMSS}, syn: true,
		probed: true, method: records.MethodSYNACK, userid: userid, panum: 1001, nprobes: 1, conf: confUs != 0, confUs: confUs}
}

type capture struct {
	mu      sync.Mutex
	batches [][]string
}

// waitBatches waits until c holds n batches, failing the test after wait:
// a following run writes them while the test goes on.
func (c *capture) waitBatches(t *testing.T, n int, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		got := len(c.batches)
		c.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d not written while following", n-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *capture) WriteBatch(_ int, recs []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b []string
	for i := range recs {
		b = append(b, string(recs[i].AppendJSON(nil)))
	}
	c.batches = append(c.batches, b)
	return nil
}

var h0 = time.Date(2021, 10, 13, 21, 0, 0, 0, time.UTC)

func TestProbeTimeoutAndOneConfirmationPerEvent(t *testing.T) {
	dir := t.TempDir()
	ms := h0.UnixMilli() + 1000
	s1 := gsyn(ms, 1, 7, ms*1000+300e6)   // exactly 5 min later: matched
	s2 := gsyn(ms, 2, 8, ms*1000+300e6+1) // 1 µs too late: never
	s3 := gsyn(ms+10, 1, 7, 0)            // same key as s1: its confirmation is used up
	writeLog(t, dir, h0, []genRow{s1, s2, s3}, []genRow{s1, s2})
	var rounds []RoundStats
	err := Run(context.Background(), Config{Dir: dir, Tag: "t", Start: h0, OnRound: func(r RoundStats) { rounds = append(rounds, r) }},
		&capture{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rounds) != 1 || rounds[0].Confirmed != 1 || rounds[0].Kept != 2 {
		t.Fatalf("rounds = %+v, want one round with 1 confirmed and 2 kept", rounds)
	}
}

func TestUnconfirmedDroppedAfterTwoRounds(t *testing.T) {
	dir := t.TempDir()
	var st Stats
	for h := range 4 {
		hour := h0.Add(time.Duration(h) * time.Hour)
		ms := hour.UnixMilli() + 1000
		s := gsyn(ms, uint16(h+1), uint32(h+1), 0)
		// Every scamper file needs a row: the original's reader waits
		// until it has one.
		c := gsyn(ms+5, 9, uint32(100+h), (ms+5)*1000+1000)
		writeLog(t, dir, hour, []genRow{s, c}, []genRow{c})
	}
	err := Run(context.Background(), Config{Dir: dir, Tag: "t", Start: h0}, &capture{}, &st)
	if err != nil {
		t.Fatal(err)
	}
	// Round 2 evicts batch 0, round 3 batch 1.
	if st.UnconfirmedDropped != 2 {
		t.Errorf("unconfirmed dropped = %d, want 2", st.UnconfirmedDropped)
	}
}

func TestCheckpointStallsWithoutRecords(t *testing.T) {
	// --start one hour before the first file: batch 0 is a skipped hour,
	// checkpoint(0) finds nothing and b never advances (Py quirk), so
	// nothing is written; the flush writes the rest.
	dir := t.TempDir()
	for h := 1; h <= 3; h++ {
		hour := h0.Add(time.Duration(h) * time.Hour)
		ms := hour.UnixMilli() + 2_000_000 // hh:33
		writeLog(t, dir, hour, []genRow{gsyn(ms, uint16(h), uint32(h), ms*1000+1000)}, []genRow{gsyn(ms, uint16(h), uint32(h), ms*1000+1000)})
	}
	c := &capture{}
	var cps []CheckpointStats
	cfg := Config{Dir: dir, Tag: "t", Start: h0, OnCheckpoint: func(s CheckpointStats) { cps = append(cps, s) }}
	if err := Run(context.Background(), cfg, c, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.batches) != 0 || len(cps) == 0 || cps[len(cps)-1].Batch != 0 {
		t.Fatalf("batches %d, checkpoints %+v: want none written, stalled at 0", len(c.batches), cps)
	}
	c = &capture{}
	cfg.FlushAtEOF = true
	if err := Run(context.Background(), cfg, c, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.batches) != 3 {
		t.Fatalf("with flush: %d batches, want 3", len(c.batches))
	}
}

func TestReaderGzipAndPartialLine(t *testing.T) {
	dir := t.TempDir()
	ms := h0.UnixMilli() + 1000
	s := gsyn(ms, 1, 1, ms*1000+1000)
	// Raw log gzip-compressed, its last row without a line end (the
	// original keeps such a line until it is completed: never, here).
	f, err := os.Create(filepath.Join(dir, fileName(h0, "t", "raw")+".gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	bw := bufio.NewWriter(zw)
	bw.WriteString(records.RawHeader + "\n")
	bw.Write(appendGenRaw(nil, &s))
	s2 := gsyn(ms+1, 2, 2, 0)
	bw.Write([]byte(strings.TrimSuffix(string(appendGenRaw(nil, &s2)), "\n")))
	bw.Flush()
	zw.Close()
	f.Close()
	if err := writeRows(filepath.Join(dir, fileName(h0, "t", "scamper")), records.ReplyHeader, []genRow{s}, appendGenCon); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	var st Stats
	if err := Run(context.Background(), Config{Dir: dir, Tag: "t", Start: h0, FlushAtEOF: true}, c, &st); err != nil {
		t.Fatal(err)
	}
	if st.Rows != 1 || len(c.batches) != 1 || len(c.batches[0]) != 1 {
		t.Fatalf("rows %d, batches %v: want 1 row, one record", st.Rows, c.batches)
	}
}

func TestBadRowsSkipped(t *testing.T) {
	dir := t.TempDir()
	ms := h0.UnixMilli() + 1000
	s := gsyn(ms, 1, 1, ms*1000+1000)
	raw := records.RawHeader + "\n" + string(appendGenRaw(nil, &s)) +
		"notanumber|192.0.2.1|198.51.100.1|0|64|tcp|1|80|0|0|||1|0|0|0|8192|false|||||\n" +
		"1634159100000|192.0.2.1\n\n"
	os.WriteFile(filepath.Join(dir, fileName(h0, "t", "raw")), []byte(raw), 0o644)
	writeRows(filepath.Join(dir, fileName(h0, "t", "scamper")), records.ReplyHeader, []genRow{s}, appendGenCon)
	var st Stats
	if err := Run(context.Background(), Config{Dir: dir, Tag: "t", Start: h0, FlushAtEOF: true}, &capture{}, &st); err != nil {
		t.Fatal(err)
	}
	if st.RowsBadValue != 1 || st.RowsMissingColumn != 2 || st.Records != 1 {
		t.Errorf("stats %+v: want 1 bad value, 2 missing columns (short row, empty line), 1 record", st)
	}
}
