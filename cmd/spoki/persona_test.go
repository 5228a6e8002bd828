package main

import (
	"slices"
	"testing"
)

// TestPersonaFlags checks that --persona and --persona-prefix set the
// personas, and that --persona-prefix replaces the file's list (as the
// other list flags do) while the file's list stands without it.
func TestPersonaFlags(t *testing.T) {
	p := writeConfig(t, "prefix: [192.0.2.0/24]\npersona: windows\npersona-prefix: [192.0.2.0/25=embedded, 192.0.2.128/26=linux]\n")
	cfg, err := parseRunFlags([]string{"--config", p})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg.Persona != "windows" || !slices.Equal(cfg.PersonaPrefixes, []string{"192.0.2.0/25=embedded", "192.0.2.128/26=linux"}) {
		t.Errorf("file: persona %q, prefixes %v", cfg.Persona, cfg.PersonaPrefixes)
	}
	cfg, err = parseRunFlags([]string{"--config", p, "--persona", "linux", "--persona-prefix", "192.0.2.192/26=plain"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg.Persona != "linux" || !slices.Equal(cfg.PersonaPrefixes, []string{"192.0.2.192/26=plain"}) {
		t.Errorf("flags over the file: persona %q, prefixes %v", cfg.Persona, cfg.PersonaPrefixes)
	}
	if _, err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	cfg, err = parseRunFlags([]string{"--prefix", "192.0.2.0/24"})
	if err != nil || cfg.Persona != "plain" || len(cfg.PersonaPrefixes) != 0 {
		t.Errorf("defaults: persona %q, prefixes %v, %v", cfg.Persona, cfg.PersonaPrefixes, err)
	}
}
