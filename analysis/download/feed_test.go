package download

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
)

// TestSplitList checks the comma lists of --kafka, --tag and
// --kafka-events: blanks dropped, the default only for an empty list.
func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in, def string
		want    []string
	}{
		{"a,b", "x", []string{"a", "b"}},
		{" a , ,b,", "", []string{"a", "b"}},
		{"", "x", []string{"x"}},
		{" , ", "x", []string{"x"}},
		{"", "", nil},
	} {
		if got := SplitList(tc.in, tc.def); !slices.Equal(got, tc.want) {
			t.Errorf("SplitList(%q, %q) = %q, want %q", tc.in, tc.def, got, tc.want)
		}
	}
}

// TestFeedFiles checks that Feed reads the input files (no Brokers) and
// counts them for the last line; an empty file hands over no target.
func TestFeedFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.events.2021-10-13.21.jsonl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	attrs, err := Feed(context.Background(), FeedConfig{Inputs: []string{dir}, Workers: 1, PerHost: 1, MaxURLsPerPayload: 1},
		func(context.Context, Target) error { n.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range attrs {
		got[a.Key] = a.Value.String()
	}
	if got["files"] != "1" || got["lines"] != "0" || n.Load() != 0 {
		t.Errorf("Feed attrs %v, %d targets; want files=1 lines=0 and none", got, n.Load())
	}
}
