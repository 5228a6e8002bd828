package main

import (
	"testing"
)

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
