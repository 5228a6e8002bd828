package netstack

import (
	"testing"

	"github.com/spoki-telescope/spoki/stats/statstest"
)

// TestSnapshotCopiesEveryCounter checks that Snapshot carries every
// counter of Stats.
func TestSnapshotCopiesEveryCounter(t *testing.T) {
	var s Stats
	statstest.CheckSnapshot(t, &s, func() any { return s.Snapshot() })
}
