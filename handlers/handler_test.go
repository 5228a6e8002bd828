package handlers_test

import (
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

func TestOrDefault(t *testing.T) {
	if got := handlers.OrDefault(0, 7); got != 7 {
		t.Errorf("zero: got %d, want the default 7", got)
	}
	if got := handlers.OrDefault(-3, 7); got != 7 {
		t.Errorf("negative: got %d, want the default 7", got)
	}
	if got := handlers.OrDefault(2, 7); got != 2 {
		t.Errorf("set: got %d, want 2", got)
	}
	if got := handlers.OrDefault(time.Duration(0), time.Second); got != time.Second {
		t.Errorf("duration: got %v, want 1s", got)
	}
}
