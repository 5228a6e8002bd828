package stats

import (
	"fmt"
	"log/slog"
)

// Line gathers the stats line: keys in the order first added, values of
// the same key summed. The zero Line is ready to use.
type Line struct {
	keys []string
	vals map[string]Value
}

// Add adds every field of the stats struct v.
func (l *Line) Add(v any) {
	Each(v, func(f *Field, key string, x Value) {
		for _, k := range f.Line {
			if f.Map {
				k += "." + key
			}
			l.add(k, x)
		}
	})
}

func (l *Line) add(k string, x Value) {
	if l.vals == nil {
		l.vals = map[string]Value{}
	}
	if old, ok := l.vals[k]; ok {
		l.vals[k] = old.Add(x)
		return
	}
	l.keys = append(l.keys, k)
	l.vals[k] = x
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
