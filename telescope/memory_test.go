package telescope

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/config"
)

// TestSetMemoryLimit checks that --memory-limit becomes Go's memory limit,
// that an environment GOMEMLIMIT wins (the runtime applied it at start, so
// spoki leaves the limit alone), and that the start-up line says which.
func TestSetMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	run := func() string {
		var buf bytes.Buffer
		cfg := config.Default()
		cfg.MemoryLimit = 100 << 20
		setMemoryLimit(cfg)(slog.New(slog.NewTextHandler(&buf, nil)))
		return buf.String()
	}

	t.Setenv("GOMEMLIMIT", "")
	out := run()
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Errorf("memory limit = %d, want 100MiB from --memory-limit", got)
	}
	if !strings.Contains(out, "limit=100MiB") || !strings.Contains(out, "source=memory-limit") ||
		!strings.Contains(out, "4096 × 2 × 8KiB = 64MiB") {
		t.Errorf("start-up line %q, want the limit, its source and the connection buffers", out)
	}

	debug.SetMemoryLimit(300 << 20) // as if the runtime had read GOMEMLIMIT=300MiB
	t.Setenv("GOMEMLIMIT", "300MiB")
	out = run()
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("memory limit = %d, want GOMEMLIMIT's 300MiB to win", got)
	}
	if !strings.Contains(out, "limit=300MiB") || !strings.Contains(out, `source="GOMEMLIMIT=300MiB"`) {
		t.Errorf("start-up line %q, want GOMEMLIMIT named as the source", out)
	}
}
