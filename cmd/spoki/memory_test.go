package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// TestSetMemoryLimit checks that --memory-limit becomes Go's memory limit,
// that an environment GOMEMLIMIT wins (the runtime applied it at start, so
// spoki leaves the limit alone), and that the start-up line says which.
func TestSetMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	run := func() string {
		var buf bytes.Buffer
		cfg := defaultRunConfig()
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

func TestValidateMemoryFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--conn-buffer", "2KiB"},
		{"--conn-buffer", "128KiB"},
		{"--memory-limit", "1MiB"},
		{"--request-timeout", "0s"},
	} {
		cfg, err := parseRunFlags(append([]string{"--prefix", "192.0.2.0/24"}, args...))
		if err == nil {
			_, err = cfg.Validate()
		}
		if err == nil {
			t.Errorf("spoki run %v: no error, want one", args)
		}
	}
	cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24", "--conn-buffer", "16KiB", "--memory-limit", "1GiB"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Validate(); err != nil || cfg.ConnBuffer != 16<<10 || cfg.MemoryLimit != 1<<30 {
		t.Errorf("validate = %v, conn buffer %d, limit %d", err, cfg.ConnBuffer, cfg.MemoryLimit)
	}
}
