package telescope

import (
	"context"
	"testing"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/records"
)

// TestMuxSet checks that a swapped-in Mux serves new connections and that
// the counters of every Mux add up.
func TestMuxSet(t *testing.T) {
	var s muxSet
	for range 2 {
		m, err := handlers.NewMux(handlers.MuxConfig{
			Registry: handlers.NewRegistry(handlers.Func("generic", func(context.Context, *handlers.Conn) (any, error) { return nil, nil })),
			Emit:     func(*records.Session) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.swap(m)
		m.Stats().Errors.Add(1)
	}
	if got := s.snapshot().Errors; got != 2 {
		t.Errorf("snapshot().Errors = %d, want 2 (one per Mux)", got)
	}
	if s.cur.Load() != s.all[1] {
		t.Errorf("current Mux is not the last swapped in")
	}
}
