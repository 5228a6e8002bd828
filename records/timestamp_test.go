package records

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendTimestamp checks the fast path against the general one and
// against time.Format, at the ends of its range, around leap days and
// centuries, and at random times.
func TestAppendTimestamp(t *testing.T) {
	const layout = TimestampLayout
	times := []time.Time{
		time.Unix(minFastUnix, 0), time.Unix(maxFastUnix, 999999999), time.Unix(0, 0),
		time.Date(2000, 2, 29, 23, 59, 59, 1, time.UTC), time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 2, 28, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2024, 2, 29, 1, 2, 3, 4, time.FixedZone("x", 5*3600)),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		times = append(times, time.Unix(minFastUnix+rng.Int64N(maxFastUnix-minFastUnix+1), rng.Int64N(1e9)))
	}
	for _, tm := range times {
		got := string(appendTimestamp(nil, tm))
		if want := string(appendTimestampSlow(nil, tm)); got != want {
			t.Fatalf("appendTimestamp(%v) = %s, the general path %s", tm, got, want)
		}
		if want := tm.UTC().Format(layout); got != want || len(got) != TimestampLen {
			t.Fatalf("appendTimestamp(%v) = %s, time.Format %s", tm, got, want)
		}
	}
	// Outside the fast range the general path answers.
	far := time.Date(12000, 1, 2, 3, 4, 5, 6, time.UTC)
	if got, want := string(appendTimestamp(nil, far)), string(appendTimestampSlow(nil, far)); got != want {
		t.Errorf("appendTimestamp(%v) = %s, want %s", far, got, want)
	}
}

// BenchmarkAppendTimestamp compares appendTimestamp's fast path with the
// general one (t.Date and t.Clock), which every event used before.
func BenchmarkAppendTimestamp(b *testing.B) {
	tm := time.Date(2026, 11, 25, 11, 3, 32, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		f    func([]byte, time.Time) []byte
	}{{"fast", appendTimestamp}, {"ref", refAppendTimestamp}, {"general", appendTimestampSlow}} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = tc.f(buf[:0], tm.Add(time.Duration(i)))
			}
		})
	}
}
