package main

import (
	"strings"
	"testing"
)

// TestPhaseMemoryFlag checks --phase-memory: its default, the flag and the
// config key, and the range validate accepts.
func TestPhaseMemoryFlag(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24"})
	if err != nil || cfg.PhaseMemory != 32<<20 {
		t.Fatalf("default phase-memory %v, %v; want 32MiB", cfg.PhaseMemory, err)
	}
	cfg, err = parseRunFlags([]string{"--prefix", "192.0.2.0/24", "--phase-memory", "8MiB"})
	if err != nil || cfg.PhaseMemory != 8<<20 {
		t.Errorf("--phase-memory 8MiB: %v, %v", cfg.PhaseMemory, err)
	}
	if _, err := cfg.Validate(); err != nil {
		t.Errorf("validate 8MiB: %v", err)
	}
	cfg, err = parseRunFlags([]string{"--config", writeConfig(t, "prefix: [192.0.2.0/24]\nphase-memory: 4MiB\n")})
	if err != nil || cfg.PhaseMemory != 4<<20 {
		t.Errorf("phase-memory: 4MiB in the file: %v, %v", cfg.PhaseMemory, err)
	}
	if _, err := parseRunFlags([]string{"--phase-memory", "lots"}); err == nil {
		t.Error("--phase-memory lots parsed")
	}
	for _, bad := range []string{"1KiB", "0", "17GiB"} {
		cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24", "--phase-memory", bad})
		if err == nil {
			_, err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "phase-memory") {
			t.Errorf("--phase-memory %s: %v, want a range error", bad, err)
		}
	}
}
