package labrun

import (
	"io"
	"slices"
	"testing"

	"github.com/spoki-telescope/spoki/scenarios"
)

// TestScenarioTelescopeFlags checks how a run (`spoki scenario run`) picks the
// flags of the telescope it starts from the scripts' `telescope:` comments.
func TestScenarioTelescopeFlags(t *testing.T) {
	plain := &scenarios.Script{Name: "a.pkt"}
	pure := &scenarios.Script{Name: "b.pkt", Telescope: []string{"--pure"}}
	pure2 := &scenarios.Script{Name: "c.pkt", Telescope: []string{"--pure"}}
	for _, tc := range []struct {
		name    string
		scripts []*scenarios.Script
		running bool
		want    []string
		wantErr bool
	}{
		{"none", []*scenarios.Script{plain}, false, nil, false},
		{"agreeing", []*scenarios.Script{pure, pure2}, false, []string{"--pure"}, false},
		{"mixed", []*scenarios.Script{plain, pure}, false, nil, true},
		{"running telescope: only noted", []*scenarios.Script{plain, pure}, true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TelescopeFlags(tc.scripts, tc.running, io.Discard)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("TelescopeFlags = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
