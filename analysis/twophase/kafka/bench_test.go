package kafka

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spoki-telescope/spoki/analysis/twophase"
	"github.com/spoki-telescope/spoki/records"
)

// BenchmarkRecord measures what a member spends on one `syn` record past
// the fetch: decoding the event and the detector's Observe (irregular,
// answered SYNs from one-off sources, as a flood sends). It bounds the
// SYNs per second one core of a member handles.
func BenchmarkRecord(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now()
	tel := generate(0, 1<<16, 0, base, rng)
	lines := make([][]byte, len(tel.syns))
	for i := range tel.syns {
		lines[i] = records.AppendSYNEvent(nil, &tel.syns[i])
	}
	m := &Member{}
	st := &partition{det: twophase.New(twophase.Config{Memory: 64 << 20})}
	r := &kgo.Record{}
	var p records.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := parseSYN(lines[i%len(lines)], &p); err != nil {
			b.Fatal(err)
		}
		m.observe(st, &p, r, false)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "syn/s")
}

// BenchmarkParse is the decoding alone.
func BenchmarkParse(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	tel := generate(0, 1<<10, 0, time.Now(), rng)
	line := records.AppendSYNEvent(nil, &tel.syns[0])
	var p records.Packet
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := parseSYN(line, &p); err != nil {
			b.Fatal(err)
		}
	}
}
