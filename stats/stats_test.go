package stats

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type demo struct {
	In      uint64            `line:"in" metric:"demo_packets_total{verdict=in}" help:"Packets by verdict."`
	DropA   uint64            `line:"drops drop_ab" metric:"demo_drops_total{cause=a} demo_packets_total{verdict=drop}" help:"Drops by cause."`
	DropB   uint64            `line:"drops drop_ab" metric:"demo_drops_total{cause=b} demo_packets_total{verdict=drop}"`
	Active  int64             `line:"active" metric:"demo_active" help:"Now."`
	Window  time.Duration     `line:"window_s" metric:"demo_window_seconds" help:"Window."`
	ByProto map[string]uint64 `line:"by" metric:"demo_sessions_total{proto}" help:"Sessions."`
	Sum     uint64            `line:"sessions" metric:"-"`
	hidden  uint64
}

func lineOf(v any) string {
	var l Line
	l.Add(v)
	var b strings.Builder
	for _, a := range l.Attrs() {
		fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value)
	}
	return strings.TrimSpace(b.String())
}

// TestLineSums checks the stats line's keys, order and sums.
func TestLineSums(t *testing.T) {
	d := demo{In: 7, DropA: 2, DropB: 3, Active: -1, Window: 1500 * time.Millisecond,
		ByProto: map[string]uint64{"ssh": 1, "http": 4}, Sum: 5, hidden: 9}
	got := lineOf(&d)
	want := "in=7 drops=5 drop_ab=5 active=-1 window_s=1.5 by.http=4 by.ssh=1 sessions=5"
	if got != want {
		t.Errorf("line\n got %s\nwant %s", got, want)
	}
}

// TestSeriesSums checks the series, their labels and sums.
func TestSeriesSums(t *testing.T) {
	d := demo{In: 7, DropA: 2, DropB: 3, ByProto: map[string]uint64{"ssh": 1}}
	var s Series
	s.Add(d)
	var got []string
	s.Each(func(m Metric, x Value) {
		got = append(got, fmt.Sprintf("%s{%s=%s}=%v", m.Name, m.Label, m.Value, x.Float64()))
	})
	want := "demo_packets_total{verdict=in}=7 demo_drops_total{cause=a}=2 demo_packets_total{verdict=drop}=5 " +
		"demo_drops_total{cause=b}=3 demo_active{=}=0 demo_window_seconds{=}=0 demo_sessions_total{proto=ssh}=1"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("series\n got %s\nwant %s", g, want)
	}
	ms, err := Metrics(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 || ms[0].Name != "demo_packets_total" || ms[0].Help != "Packets by verdict." || !ms[0].Counter || ms[2].Counter {
		t.Errorf("metrics %+v", ms)
	}
}

// TestDescribeRefuses checks that an undescribed or unreadable field is
// refused.
func TestDescribeRefuses(t *testing.T) {
	type noTag struct {
		A uint64 `line:"a"`
	}
	type badType struct {
		A string `line:"a" metric:"x"`
	}
	type badMap struct {
		A map[string]uint64 `line:"a" metric:"x_total"`
	}
	type twoHelps struct {
		A uint64 `line:"a" metric:"x_total{c=a}" help:"one"`
		B uint64 `line:"b" metric:"x_total{c=b}" help:"two"`
	}
	for _, v := range []any{noTag{}, badType{}, badMap{}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%T: described", v)
				}
			}()
			Describe(v)
		}()
	}
	if _, err := Metrics(twoHelps{}); err == nil {
		t.Error("two helps accepted")
	}
	type noHelp struct {
		A uint64 `line:"a" metric:"x_total"`
	}
	if _, err := Metrics(noHelp{}); err == nil {
		t.Error("no help accepted")
	}
}

// TestSum checks that Sum adds numbers and map entries.
func TestSum(t *testing.T) {
	a := demo{In: 1, Active: 2, ByProto: map[string]uint64{"ssh": 1}}
	var sum demo
	Sum(&sum, a)
	Sum(&sum, demo{In: 2, ByProto: map[string]uint64{"ssh": 2, "http": 1}})
	if sum.In != 3 || sum.Active != 2 || sum.ByProto["ssh"] != 3 || sum.ByProto["http"] != 1 || a.ByProto["ssh"] != 1 {
		t.Errorf("sum %+v (a %+v)", sum, a)
	}
}

// BenchmarkLine measures one stats line of the demo struct.
func BenchmarkLine(b *testing.B) {
	d := demo{In: 1, ByProto: map[string]uint64{"ssh": 1}}
	b.ReportAllocs()
	for b.Loop() {
		var l Line
		l.Add(&d)
		_ = l.Attrs()
	}
}
