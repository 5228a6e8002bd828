package assemble

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAssemble runs assemble over a synthetic log of at least 2
// million raw rows (24 hours; SPOKI_BENCH_ROWS and SPOKI_BENCH_HOURS
// override the total and the hours) and reports rows/s and the peak RSS,
// which follows the rows per hour (the open window), not the total.
// SPOKI_BENCH_PROGRESS=1 adds the progress hook of a terminal run (a line
// formatted at most every 250 ms). Run it on one core:
//
//	GOMAXPROCS=1 go test -run '^$' -bench Assemble -benchtime 1x ./analysis/assemble
func BenchmarkAssemble(b *testing.B) {
	total := 2_400_000
	if s := os.Getenv("SPOKI_BENCH_ROWS"); s != "" {
		total, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	start := time.Date(2021, 10, 13, 0, 0, 0, 0, time.UTC)
	hours := 24
	if s := os.Getenv("SPOKI_BENCH_HOURS"); s != "" {
		hours, _ = strconv.Atoi(s)
	}
	rows, err := Generate(GenConfig{Dir: dir, Tag: "bench", Start: start, Hours: hours, RowsPerHour: total / hours, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	var st Stats
	var onProgress func(Progress)
	lines := 0
	if os.Getenv("SPOKI_BENCH_PROGRESS") == "1" {
		began, last := time.Now(), time.Time{}
		onProgress = func(p Progress) {
			if now := time.Now(); p.Done || now.Sub(last) >= 250*time.Millisecond {
				last = now
				_ = p.Line(now.Sub(began))
				lines++
			}
		}
	}
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		st = Stats{}
		sink := &FileSink{Dir: out, Tag: "bench"}
		cfg := Config{Dir: dir, Tag: "bench", Start: start, FlushAtEOF: true, OnProgress: onProgress}
		if err := Run(context.Background(), cfg, sink, &st); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	rps := float64(rows+int(st.Confirmations)) * float64(b.N) / el.Seconds()
	b.ReportMetric(float64(rows)*float64(b.N)/el.Seconds(), "rawrows/s")
	b.ReportMetric(rps, "rows/s")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peakRSS-MiB")
	b.Logf("raw rows %d, confirmations %d, records %d in %d batches, %.0f raw rows/s, %.0f rows/s (raw+scamper), peak RSS %d MiB, %d progress lines",
		rows, st.Confirmations, st.Records, st.Batches, float64(rows)*float64(b.N)/el.Seconds(), rps, ru.Maxrss/1024, lines)
}
