package kafkasink

import (
	"testing"

	"github.com/spoki-telescope/spoki/stats/statstest"
)

// TestStatsCopiesEveryCounter checks that Publisher.Stats carries every
// counter the Publisher keeps (the warnings' clocks and the auth state are no counters).
func TestStatsCopiesEveryCounter(t *testing.T) {
	p := &Publisher{}
	statstest.CheckSnapshot(t, p, func() any { return p.Stats() }, "lastWarnBufferFull", "lastWarnBrokerError", "lastWarnAuth", "authFailing")
}
