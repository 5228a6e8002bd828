package promstats

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoki-telescope/spoki/internal/version"
)

// TestVersionBuildInfoMetric checks that the registry New builds carries
// spoki_build_info = 1 with the running binary's version, commit and Go
// version.
func TestVersionBuildInfoMetric(t *testing.T) {
	tel := New(func() []any { return []any{testStats{}} }, testStats{})
	fams, err := tel.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	in := version.Get()
	for _, f := range fams {
		if f.GetName() != "spoki_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("spoki_build_info has %d series, want 1", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("spoki_build_info = %v, want 1", v)
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != in.Version || labels["goversion"] != in.GoVersion || labels["commit"] == "" {
			t.Errorf("labels %v, want version %q goversion %q and a commit", labels, in.Version, in.GoVersion)
		}
		return
	}
	t.Fatal("no spoki_build_info in the registry")
}

// TestVersionBuildInfoLabels checks the commit label: "-dirty" for a
// modified tree, "unknown" without VCS information.
func TestVersionBuildInfoLabels(t *testing.T) {
	for _, tc := range []struct {
		in   version.Info
		want string
	}{
		{version.Info{Version: "1", Commit: "abc", Modified: true, GoVersion: "go1"}, "abc-dirty"},
		{version.Info{Version: "1", Commit: "abc", GoVersion: "go1"}, "abc"},
		{version.Info{Version: "1", GoVersion: "go1"}, "unknown"},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(BuildInfo(tc.in))
		fams, err := reg.Gather()
		if err != nil || len(fams) != 1 || len(fams[0].GetMetric()) != 1 {
			t.Fatalf("%+v: gather: %v %v", tc.in, fams, err)
		}
		for _, l := range fams[0].GetMetric()[0].GetLabel() {
			if l.GetName() == "commit" && l.GetValue() != tc.want {
				t.Errorf("%+v: commit label %q, want %q", tc.in, l.GetValue(), tc.want)
			}
		}
	}
}
