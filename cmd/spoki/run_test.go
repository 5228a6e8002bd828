package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spoki.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile checks that the config file sets every key, that flags
// win over it, and that the README's example is valid.
func TestConfigFile(t *testing.T) {
	p := writeConfig(t, `
prefix: [192.0.2.0/24, 2001:db8:5b0::/48]
log-dir: /var/lib/spoki
tag: mytelescope
queues: 3
max-conns: 10
idle-timeout: 7s
phase-timeout: 300s
pure-prefix: [192.0.2.128/25]
handlers:
  http: {ports: [80, 8080, 8888]}
  ssh: {prefixes: [192.0.2.0/25], settings: {banner: "SSH-2.0-OpenSSH_9.2p1", readtimeout: 5s}}
  telnet: {disabled: true}
`)
	cfg, err := parseRunFlags([]string{"--config", p, "--tag", "fromflag"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg.Tag != "fromflag" {
		t.Errorf("tag = %q, want the flag's", cfg.Tag)
	}
	if cfg.LogDir != "/var/lib/spoki" || cfg.Queues != 3 || cfg.MaxConns != 10 || cfg.IdleTimeout != 7*time.Second || cfg.PhaseTimeout != 300*time.Second {
		t.Errorf("file values not applied: %+v", cfg)
	}
	if len(cfg.Prefixes) != 2 || len(cfg.PurePrefixes) != 1 || !cfg.Handlers["telnet"].Disabled {
		t.Errorf("lists not applied: %+v", cfg)
	}
	if _, err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

// TestConfigErrors checks that bad configurations fail before anything is
// set up, with a message naming the problem.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key with its line", "prefix: [192.0.2.0/24]\nqeues: 2\n", "line 2"},
		{"unknown handler", "prefix: [192.0.2.0/24]\nhandlers:\n  gopher: {ports: [70]}\n", "unknown handler"},
		{"port claimed twice", "prefix: [192.0.2.0/24]\nhandlers:\n  ssh: {ports: [80]}\n", "80"},
		{"bad handler prefix", "prefix: [192.0.2.0/24]\nhandlers:\n  ssh: {prefixes: [nonsense]}\n", "nonsense"},
		{"overlapping prefixes", "prefix: [192.0.2.0/24, 192.0.2.0/25]\n", "overlap"},
		{"misspelt handler setting with its line", "prefix: [192.0.2.0/24]\nhandlers:\n  http:\n    settings:\n      server: x\n      bannr: y\n", "line 6: handlers: http: field bannr"},
		{"handler setting of the wrong type", "prefix: [192.0.2.0/24]\nhandlers:\n  ssh:\n    settings: {readtimeout: soon}\n", "ssh"},
		{"record wait out of range", "prefix: [192.0.2.0/24]\nrecord-wait: 2s\n", "line 2: record-wait: 2s outside 0-1s"},
		{"compress workers out of range", "prefix: [192.0.2.0/24]\ncompress-workers: 65\n", "line 2: compress-workers: 65 out of range 1-64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseRunFlags([]string{"--config", writeConfig(t, tc.yaml)})
			if err == nil {
				_, err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
