package filesink

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkWriterFlood measures what the record writer costs the process
// per SYN end to end, as under a flood: two producers (the TUN readers)
// hand over a read's worth of SYNs and their SYN-ACKs' reply rows
// (BatchRecords of each) with Records at a steady rate, and the writer
// goroutine drains, encodes and writes them to files in a temporary
// directory, its flushes and Close included. cpu-ns/SYN is the process's
// user and system CPU (getrusage) over the run per SYN, ctxsw/SYN its
// context switches (voluntary and not); the sub-benchmark "pace" runs the
// producers alone (Records not called), so that the writer's share is the
// difference. Rates: 100k SYN/s (the flood of test/bench_test.go) and 2k.
func BenchmarkWriterFlood(b *testing.B) {
	for _, rate := range []int{100_000, 2_000} {
		for _, write := range []bool{false, true} {
			name := "pace"
			if write {
				name = "writer"
			}
			b.Run(fmt.Sprintf("rate=%dk/%s", rate/1000, name), func(b *testing.B) {
				benchFlood(b, rate, write)
			})
		}
	}
}

func benchFlood(b *testing.B, rate int, write bool) {
	const producers = 2
	w, err := New(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	batches := max(1, b.N/BatchRecords/producers)
	syns := batches * BatchRecords * producers
	period := time.Duration(float64(time.Second) * BatchRecords * producers / float64(rate))
	var before, after syscall.Rusage
	b.ReportAllocs()
	b.ResetTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts, reps := synBatch(time.Now(), BatchRecords)
			for i := range pkts {
				pkts[i].SrcPort += uint16(g * BatchRecords)
				reps[i].DstPort = pkts[i].SrcPort
			}
			// Staggered, as two readers' reads are.
			next := start.Add(time.Duration(g) * period / producers)
			for range batches {
				next = next.Add(period)
				if d := time.Until(next); d > 0 {
					// In a system call, as a TUN reader waits in
					// its reads: time.Sleep would park the goroutine
					// and hand its thread to the writer.
					ts := syscall.NsecToTimespec(d.Nanoseconds())
					syscall.Nanosleep(&ts, nil)
				}
				now := time.Now()
				for i := range pkts {
					pkts[i].Time, reps[i].Time = now, now
					pkts[i].Seq++
				}
				if write {
					w.Records(pkts, reps)
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	b.StopTimer()
	st := w.Stats()
	if write && (st.PacketsWritten != uint64(syns) || st.RepliesWritten != uint64(syns)) {
		b.Fatalf("written %d packets, %d replies, want %d each (dropped: %+v)", st.PacketsWritten, st.RepliesWritten, syns, st)
	}
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	csw := after.Nvcsw + after.Nivcsw - before.Nvcsw - before.Nivcsw
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(syns), "cpu-ns/SYN")
	b.ReportMetric(float64(csw)/float64(syns), "ctxsw/SYN")
	b.ReportMetric(float64(syns)/elapsed.Seconds(), "SYN/s")
	// The benchmark's own ns/op is the pacing: not a figure.
	b.ReportMetric(0, "ns/op")
}
