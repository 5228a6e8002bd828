// Package stats is the one shape of spoki's counters. Each package exposes
// a plain struct snapshot of its counters (netstack.Snapshot,
// handlers.StatsSnapshot, filesink.Stats, ...) whose fields describe
// themselves in struct tags; the stats line, the `final` line and the
// Prometheus collector are all generated from those descriptions, so a new
// counter is one tagged field and appears everywhere. The final line is a
// Line: every total; the periodic stats line is made from two Lines, a
// counter's rate its Delta over the interval (FormatRate, FormatSize spell
// them for people).
//
// The packet path is untouched: packages keep incrementing their own
// atomics, and only the snapshot, read once per stats line or scrape, is
// walked here (by reflection, with each type's description cached).
//
// Tags of a field:
//
//	line:"KEY ..."    stats-line keys; values with the same key are summed
//	                  (drops, drop_backscatter). A map field's entries
//	                  appear as KEY.MAPKEY. "-" is not on the line (a
//	                  constant of the run).
//	metric:"M ..."    metrics, each NAME or NAME{LABEL=VALUE}, NAME being
//	                  subsystem_name (the caller adds the namespace); values
//	                  of the same metric and label are summed. A map field
//	                  names its label without a value, NAME{LABEL}, and each
//	                  entry becomes one series. "-" is no metric (a field
//	                  that is the sum of another metric's series).
//	help:"TEXT"       the help of the field's first metric; one field of
//	                  each metric carries it.
//
// A metric whose name ends in _total is a counter, any other a gauge.
// Every exported field must carry a line and a metric tag (Describe panics
// otherwise): a counter nobody can see is a bug found at start-up.
//
// Field types: uint64, int64, int, float64, time.Duration (seconds, as a
// float) and map[string]uint64. The type says what a field is: uint64 and
// map[string]uint64 fields are counters (only ever growing; the periodic
// stats line shows their rate, the final line their total), any other
// type a gauge (a level now, shown as it is). Describe panics on a
// counter field with a gauge metric or a gauge field with a counter one.
package stats

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Metric is one series a field contributes to.
type Metric struct {
	// Name is subsystem_name, e.g. netstack_drops_total.
	Name string
	// Label and Value are the series' one label, if any (cause,
	// bad_cookie). A map field has Label and no Value: each entry's key is
	// the value.
	Label, Value string
}

// Counter reports whether the metric is a counter (its name ends in
// _total); else it is a gauge.
func (m Metric) Counter() bool { return strings.HasSuffix(m.Name, "_total") }

// Field describes one field of a stats struct.
type Field struct {
	// Name is the Go field name.
	Name string
	// Line lists the stats-line keys the field adds to.
	Line []string
	// Metrics lists the series the field adds to; empty for metric:"-".
	Metrics []Metric
	// Help is the field's help tag ("" when another field of the metric
	// carries it).
	Help string
	// Map is set for a map[string]uint64 field.
	Map bool
	// Counter is set for a counter (a uint64 or map[string]uint64 field);
	// a gauge otherwise.
	Counter bool

	index int
}

// Value is one reading: an integer (signed or not) or a float.
type Value struct {
	kind valueKind
	u    uint64
	i    int64
	f    float64
}

type valueKind uint8

const (
	kindUint valueKind = iota
	kindInt
	kindFloat
)

// Uint, Int and Float make Values.
func Uint(u uint64) Value   { return Value{kind: kindUint, u: u} }
func Int(i int64) Value     { return Value{kind: kindInt, i: i} }
func Float(f float64) Value { return Value{kind: kindFloat, f: f} }

// Float64 is v as a float (for Prometheus).
func (v Value) Float64() float64 {
	switch v.kind {
	case kindUint:
		return float64(v.u)
	case kindInt:
		return float64(v.i)
	}
	return v.f
}

// Add returns v + w, in the wider of their kinds (float over signed over
// unsigned).
func (v Value) Add(w Value) Value {
	switch k := max(v.kind, w.kind); k {
	case kindUint:
		return Uint(v.u + w.u)
	case kindInt:
		return Int(v.asInt() + w.asInt())
	default:
		return Float(v.Float64() + w.Float64())
	}
}

func (v Value) asUint() uint64 {
	switch v.kind {
	case kindUint:
		return v.u
	case kindInt:
		return uint64(max(v.i, 0))
	}
	return uint64(max(v.f, 0))
}

func (v Value) asInt() int64 {
	if v.kind == kindUint {
		return int64(v.u)
	}
	return v.i
}

// String formats v as the stats line shows it.
func (v Value) String() string {
	switch v.kind {
	case kindUint:
		return fmt.Sprint(v.u)
	case kindInt:
		return fmt.Sprint(v.i)
	}
	return fmt.Sprint(v.f)
}

// descs caches Describe by type.
var descs sync.Map // reflect.Type → []Field

// Describe returns the fields of the struct (or pointer to struct) v. It
// panics on a field without tags or of a type it cannot read: the
// descriptions are constants of the program.
func Describe(v any) []Field {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if d, ok := descs.Load(t); ok {
		return d.([]Field)
	}
	d, err := describe(t)
	if err != nil {
		panic(err)
	}
	descs.Store(t, d)
	return d
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	mapType      = reflect.TypeFor[map[string]uint64]()
)

func describe(t reflect.Type) ([]Field, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("stats: %v is not a struct", t)
	}
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		f := Field{Name: sf.Name, index: i, Help: sf.Tag.Get("help")}
		switch {
		case sf.Type == mapType:
			f.Map, f.Counter = true, true
		case sf.Type == durationType:
		default:
			switch sf.Type.Kind() {
			case reflect.Uint64:
				f.Counter = true
			case reflect.Int64, reflect.Int, reflect.Float64:
			default:
				return nil, fmt.Errorf("stats: %v.%s: type %v is not a stats value", t, sf.Name, sf.Type)
			}
		}
		line, metric := sf.Tag.Get("line"), sf.Tag.Get("metric")
		if line == "" || metric == "" {
			return nil, fmt.Errorf("stats: %v.%s: needs line and metric tags", t, sf.Name)
		}
		if line != "-" {
			f.Line = strings.Fields(line)
		}
		if metric != "-" {
			for _, m := range strings.Fields(metric) {
				pm, err := parseMetric(m)
				if err != nil {
					return nil, fmt.Errorf("stats: %v.%s: %w", t, sf.Name, err)
				}
				if f.Map != (pm.Label != "" && pm.Value == "") {
					return nil, fmt.Errorf("stats: %v.%s: %q: a map field and only a map field names a label without a value", t, sf.Name, m)
				}
				if f.Counter != pm.Counter() {
					return nil, fmt.Errorf("stats: %v.%s: %q: a counter (uint64) field needs a _total metric, a gauge field a metric without", t, sf.Name, m)
				}
				f.Metrics = append(f.Metrics, pm)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// parseMetric reads NAME, NAME{LABEL} or NAME{LABEL=VALUE}.
func parseMetric(s string) (Metric, error) {
	name, rest, ok := strings.Cut(s, "{")
	if !ok {
		return Metric{Name: s}, nil
	}
	inner, ok := strings.CutSuffix(rest, "}")
	if !ok || name == "" {
		return Metric{}, fmt.Errorf("bad metric %q", s)
	}
	label, value, _ := strings.Cut(inner, "=")
	if label == "" {
		return Metric{}, fmt.Errorf("bad metric %q", s)
	}
	return Metric{Name: name, Label: label, Value: value}, nil
}

// Each calls fn with every field of the struct (or pointer to struct) v and
// its value; a map field calls it once per entry, in key order, with the
// key.
func Each(v any, fn func(f *Field, key string, x Value)) {
	fields := Describe(v)
	rv := reflect.Indirect(reflect.ValueOf(v))
	for i := range fields {
		f := &fields[i]
		fv := rv.Field(f.index)
		switch {
		case f.Map:
			keys := make([]string, 0, fv.Len())
			for _, k := range fv.MapKeys() {
				keys = append(keys, k.String())
			}
			slices.Sort(keys)
			for _, k := range keys {
				fn(f, k, Uint(fv.MapIndex(reflect.ValueOf(k)).Uint()))
			}
		case fv.Type() == durationType:
			fn(f, "", Float(time.Duration(fv.Int()).Seconds()))
		default:
			switch fv.Kind() {
			case reflect.Uint64:
				fn(f, "", Uint(fv.Uint()))
			case reflect.Int64, reflect.Int:
				fn(f, "", Int(fv.Int()))
			default:
				fn(f, "", Float(fv.Float()))
			}
		}
	}
}

// Sum adds every field of src to the same field of *dst (map entries by
// key), for stats of the same kind kept apart (a reload's Muxes). dst must
// point to a stats struct of src's type.
func Sum[T any](dst *T, src T) {
	Describe(src) // checks the type
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src)
	for i := range d.NumField() {
		df, sf := d.Field(i), s.Field(i)
		if !d.Type().Field(i).IsExported() {
			continue
		}
		switch df.Kind() {
		case reflect.Map:
			if sf.Len() > 0 && df.IsNil() {
				df.Set(reflect.MakeMap(df.Type()))
			}
			for _, k := range sf.MapKeys() {
				old := uint64(0)
				if v := df.MapIndex(k); v.IsValid() {
					old = v.Uint()
				}
				df.SetMapIndex(k, reflect.ValueOf(old+sf.MapIndex(k).Uint()))
			}
		case reflect.Uint64:
			df.SetUint(df.Uint() + sf.Uint())
		case reflect.Int64, reflect.Int:
			df.SetInt(df.Int() + sf.Int())
		case reflect.Float64:
			df.SetFloat(df.Float() + sf.Float())
		}
	}
}
