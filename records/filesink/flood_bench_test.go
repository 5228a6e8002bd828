package filesink

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
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

// BenchmarkWriterLatency measures how long a record waits under low load
// between its hand-off (Packet) and the writer goroutine taking it: UDP
// packets one at a time at random intervals of 0.1 to 5 ms, some to an
// idle writer and some to one that polls, the moment of the take seen by
// Config.UDPFields (which the writer calls as it writes a udp event).
// Reported: the median, the 99th percentile and the longest wait.
func BenchmarkWriterLatency(b *testing.B) {
	sent := make([]time.Time, b.N)
	waits := make([]time.Duration, b.N)
	done := make(chan struct{}, b.N)
	w, err := New(Config{Dir: b.TempDir(), UDPFields: func(dst []byte, _ uint16, payload []byte) []byte {
		i := int(payload[0]) | int(payload[1])<<8 | int(payload[2])<<16 | int(payload[3])<<24
		waits[i] = time.Since(sent[i])
		done <- struct{}{}
		return dst
	}})
	if err != nil {
		b.Fatal(err)
	}
	rnd := uint64(1)
	b.ResetTimer()
	for i := range b.N {
		rnd = rnd*6364136223846793005 + 1442695040888963407
		time.Sleep(100*time.Microsecond + time.Duration(rnd>>33)%(4900*time.Microsecond))
		p := records.Packet{Time: time.Now(), Proto: records.ProtoUDP, SrcPort: 1, DstPort: 53, WScale: -1,
			Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.10"),
			Payload: []byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)}}
		sent[i] = time.Now()
		w.Packet(&p)
	}
	for range b.N {
		<-done
	}
	b.StopTimer()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "max-µs")
	b.ReportMetric(0, "ns/op")
}
