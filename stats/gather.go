package stats

import (
	"fmt"
	"log/slog"
	"slices"
)

// Line gathers the stats line: keys in the order first added, values of
// the same key summed. The zero Line is ready to use.
type Line struct {
	keys []string
	vals map[string]Value
	// gauge holds the keys a gauge field adds to (the rest are counters).
	gauge map[string]bool
	// parts maps a key to the other keys of the fields that add to it:
	// drops → drop_bad_cookie, drop_conn_limit, ... (its breakdown).
	parts map[string][]string
}

// Add adds every field of the stats struct v.
func (l *Line) Add(v any) {
	Each(v, func(f *Field, key string, x Value) {
		for i, k := range f.Line {
			if f.Map {
				k += "." + key
			}
			l.add(k, x, f.Counter)
			if i == 0 && !f.Map {
				for _, p := range f.Line[1:] {
					if !slices.Contains(l.parts[k], p) {
						if l.parts == nil {
							l.parts = map[string][]string{}
						}
						l.parts[k] = append(l.parts[k], p)
					}
				}
			}
		}
	})
}

func (l *Line) add(k string, x Value, counter bool) {
	if l.vals == nil {
		l.vals = map[string]Value{}
	}
	if !counter {
		if l.gauge == nil {
			l.gauge = map[string]bool{}
		}
		l.gauge[k] = true
	}
	if old, ok := l.vals[k]; ok {
		l.vals[k] = old.Add(x)
		return
	}
	l.keys = append(l.keys, k)
	l.vals[k] = x
}

// Get returns the value of key k.
func (l *Line) Get(k string) (Value, bool) {
	v, ok := l.vals[k]
	return v, ok
}

// Counter reports whether k is a counter's key (a gauge's otherwise).
func (l *Line) Counter(k string) bool { return !l.gauge[k] }

// Parts returns the breakdown of key k: the other keys of the fields
// whose first key is k (drops → drop_bad_cookie, ...), in order.
func (l *Line) Parts(k string) []string { return l.parts[k] }

// Delta returns how much counter k grew from prev to l: 0 when it did not
// (or went down, as a counter of a replaced part may).
func (l *Line) Delta(prev *Line, k string) uint64 {
	cur, _ := l.Get(k)
	old, _ := prev.Get(k)
	c, o := cur.asUint(), old.asUint()
	if c < o {
		return 0
	}
	return c - o
}

// Same reports whether l and prev have the same keys and values.
func (l *Line) Same(prev *Line) bool {
	if len(l.keys) != len(prev.keys) {
		return false
	}
	for _, k := range l.keys {
		if o, ok := prev.vals[k]; !ok || o != l.vals[k] {
			return false
		}
	}
	return true
}

// Attrs returns the line's attributes, in order.
func (l *Line) Attrs() []slog.Attr {
	out := make([]slog.Attr, 0, len(l.keys))
	for _, k := range l.keys {
		switch x := l.vals[k]; x.kind {
		case kindUint:
			out = append(out, slog.Uint64(k, x.u))
		case kindInt:
			out = append(out, slog.Int64(k, x.i))
		default:
			out = append(out, slog.Float64(k, x.f))
		}
	}
	return out
}

// Series gathers metric series: one per metric and label value, in the
// order first added, values summed. The zero Series is ready to use.
type Series struct {
	order []Metric
	vals  map[Metric]Value
}

// Add adds every field of the stats struct v.
func (s *Series) Add(v any) {
	if s.vals == nil {
		s.vals = map[Metric]Value{}
	}
	Each(v, func(f *Field, key string, x Value) {
		for _, m := range f.Metrics {
			if f.Map {
				m.Value = key
			}
			if old, ok := s.vals[m]; ok {
				s.vals[m] = old.Add(x)
				continue
			}
			s.order = append(s.order, m)
			s.vals[m] = x
		}
	})
}

// Each calls fn with every series, in order.
func (s *Series) Each(fn func(m Metric, x Value)) {
	for _, m := range s.order {
		fn(m, s.vals[m])
	}
}

// MetricDesc is what a Prometheus descriptor needs of one metric.
type MetricDesc struct {
	// Name is subsystem_name; Label the one label's name, if any.
	Name, Label, Help string
	// Counter is false for a gauge.
	Counter bool
}

// Metrics returns the metrics of the stats structs vs, in order of first
// appearance. It fails when a metric has no help or two, or its fields
// disagree on its label.
func Metrics(vs ...any) ([]MetricDesc, error) {
	var out []MetricDesc
	at := map[string]int{}
	for _, v := range vs {
		for _, f := range Describe(v) {
			for j, m := range f.Metrics {
				i, ok := at[m.Name]
				if !ok {
					i = len(out)
					at[m.Name] = i
					out = append(out, MetricDesc{Name: m.Name, Label: m.Label, Counter: m.Counter()})
				}
				d := &out[i]
				if d.Label != m.Label {
					return nil, fmt.Errorf("stats: %s: label %q and %q", m.Name, d.Label, m.Label)
				}
				if f.Help != "" && j == 0 {
					if d.Help != "" {
						return nil, fmt.Errorf("stats: %s: help given twice (field %s)", m.Name, f.Name)
					}
					d.Help = f.Help
				}
			}
		}
	}
	for _, d := range out {
		if d.Help == "" {
			return nil, fmt.Errorf("stats: %s: no help", d.Name)
		}
	}
	return out, nil
}
