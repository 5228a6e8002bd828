// Package statstest checks that a package's stats snapshot copies every
// counter it keeps: a counter incremented on the packet path but missing
// from the snapshot would be counted and never seen.
package statstest

import (
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"
)

// CheckSnapshot stores a distinct value in every sync/atomic Uint64 and
// Int64 field of the struct *live (exported or not, except the names in
// skip), calls snapshot, and fails t for each whose value is not in the
// snapshot's field of the same name (first letter in upper case).
func CheckSnapshot(t testing.TB, live any, snapshot func() any, skip ...string) {
	t.Helper()
	rv := reflect.ValueOf(live).Elem()
	want := map[string]int64{}
	n := int64(1)
	for i := range rv.NumField() {
		sf := rv.Type().Field(i)
		if slices.Contains(skip, sf.Name) {
			continue
		}
		p := rv.Field(i).Addr().UnsafePointer()
		switch sf.Type {
		case reflect.TypeFor[atomic.Uint64]():
			(*atomic.Uint64)(p).Store(uint64(n))
		case reflect.TypeFor[atomic.Int64]():
			(*atomic.Int64)(p).Store(n)
		default:
			continue
		}
		want[upper(sf.Name)] = n
		n++
	}
	if len(want) == 0 {
		t.Fatalf("%T has no atomic counters", live)
	}
	snap := reflect.ValueOf(snapshot())
	for name, v := range want {
		f := snap.FieldByName(name)
		var got int64
		switch {
		case !f.IsValid():
			t.Errorf("%s: no field %s", snap.Type(), name)
			continue
		case f.CanUint():
			got = int64(f.Uint())
		case f.CanInt():
			got = f.Int()
		}
		if got != v {
			t.Errorf("%s.%s = %d, want %d (the counter's value)", snap.Type(), name, got, v)
		}
	}
}

func upper(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
