package filesink

import (
	"testing"

	"github.com/spoki-telescope/spoki/stats/statstest"
)

// TestStatsCopiesEveryCounter checks that Writer.Stats carries every
// counter the Writer keeps.
func TestStatsCopiesEveryCounter(t *testing.T) {
	w := &Writer{}
	statstest.CheckSnapshot(t, &w.c, func() any { return w.Stats() })
}
