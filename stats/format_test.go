package stats

import (
	"testing"
	"time"
)

// TestFormatSize checks the units and that ParseSize reads them back to
// within the rounding.
func TestFormatSize(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		want string
	}{{0, "0B"}, {1023, "1023B"}, {1024, "1.0KiB"}, {1536, "1.5KiB"}, {36499456, "34.8MiB"}, {3 << 30, "3.0GiB"}} {
		got := FormatSize(c.n)
		if got != c.want {
			t.Errorf("FormatSize(%d) = %q, want %q", c.n, got, c.want)
		}
		back, ok := ParseSize(got)
		if !ok || float64(back) < float64(c.n)*0.99 || float64(back) > float64(c.n)*1.01 {
			t.Errorf("ParseSize(%q) = %d, %v, want about %d", got, back, ok, c.n)
		}
	}
	if n, ok := ParseSize("36499456"); !ok || n != 36499456 {
		t.Errorf("plain bytes: %d, %v", n, ok)
	}
	for _, bad := range []string{"", "MiB", "x1KiB", "-1.0MiB"} {
		if _, ok := ParseSize(bad); ok {
			t.Errorf("ParseSize(%q) ok", bad)
		}
	}
}

// TestFormatRate checks the rates' precision.
func TestFormatRate(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		d    time.Duration
		want string
	}{{0, time.Second, "0"}, {1, time.Minute, "0.02"}, {15, time.Second, "15.0"}, {12345, 10 * time.Second, "1234"}, {5, 0, "0"}} {
		if got := FormatRate(c.n, c.d); got != c.want {
			t.Errorf("FormatRate(%d, %v) = %q, want %q", c.n, c.d, got, c.want)
		}
	}
}

// TestLineDelta checks the counters' growth, the gauges, the breakdown
// of a sum and Same.
func TestLineDelta(t *testing.T) {
	var a, b Line
	a.Add(demo{In: 5, DropA: 1, Active: 3})
	b.Add(demo{In: 9, DropA: 1, DropB: 2, Active: 1})
	if d := b.Delta(&a, "in"); d != 4 {
		t.Errorf("Delta(in) = %d, want 4", d)
	}
	if d := b.Delta(&a, "drops"); d != 2 {
		t.Errorf("Delta(drops) = %d, want 2", d)
	}
	if d := a.Delta(&b, "in"); d != 0 {
		t.Errorf("a counter going down: Delta = %d, want 0", d)
	}
	if !b.Counter("in") || !b.Counter("sessions") || b.Counter("active") || b.Counter("window_s") {
		t.Errorf("counters and gauges mixed up")
	}
	if p := b.Parts("drops"); len(p) != 1 || p[0] != "drop_ab" {
		t.Errorf("Parts(drops) = %v", p)
	}
	var c Line
	c.Add(demo{In: 9, DropA: 1, DropB: 2, Active: 1})
	if !c.Same(&b) || a.Same(&b) {
		t.Errorf("Same: %v %v", c.Same(&b), a.Same(&b))
	}
}

// TestDescribeKinds checks that a counter field with a gauge metric and a
// gauge field with a counter metric are refused.
func TestDescribeKinds(t *testing.T) {
	type counterAsGauge struct {
		N uint64 `line:"n" metric:"x_n" help:"h"`
	}
	type gaugeAsCounter struct {
		N int64 `line:"n" metric:"x_n_total" help:"h"`
	}
	for _, v := range []any{counterAsGauge{}, gaugeAsCounter{}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%T: Describe did not panic", v)
				}
			}()
			Describe(v)
		}()
	}
}
