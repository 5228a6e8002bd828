package main

import (
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/config"
)

// TestConfigCoversFlags checks that every flag of `spoki run` has its YAML
// key and every YAML key but handlers (file only) its flag, so that the
// file can say everything the command line can.
func TestConfigCoversFlags(t *testing.T) {
	cfg := defaultRunConfig()
	var p1, p2 prefixList
	fs := runFlags(&cfg, &p1, &p2)
	var flags []string
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	keys := config.Keys()
	for _, f := range flags {
		if f != "config" && !slices.Contains(keys, f) {
			t.Errorf("flag --%s has no YAML key", f)
		}
	}
	for _, k := range keys {
		if k != "handlers" && !slices.Contains(flags, k) {
			t.Errorf("YAML key %s has no flag", k)
		}
	}
}

// TestConfigCheckCommand checks the command's output and exit status.
func TestConfigCheckCommand(t *testing.T) {
	good := writeConfig(t, "prefix: [192.0.2.0/24]\n")
	if err := configMain(context.Background(), []string{"check", good}); err != nil {
		t.Errorf("config check of a good file = %v, want nil", err)
	}
	bad := writeConfig(t, "prefix: [192.0.2.0/24]\nqeues: 2\nmax-conns: 0\n")
	err := configMain(context.Background(), []string{"check", bad})
	if err == nil || !strings.Contains(err.Error(), "2 problem") {
		t.Errorf("config check of a bad file = %v, want 2 problems", err)
	}
	if code := realMain([]string{"config", "check", bad}); code != 1 {
		t.Errorf("spoki config check BAD: exit %d, want 1", code)
	}
	if code := realMain([]string{"config", "check", filepath.Join(t.TempDir(), "missing.yaml")}); code != 1 {
		t.Errorf("spoki config check MISSING: exit %d, want 1", code)
	}
}

// TestParseRunFlagsMetrics checks the new key and flag, and that flags
// still win over the file.
func TestParseRunFlagsMetrics(t *testing.T) {
	p := writeConfig(t, "prefix: [192.0.2.0/24]\nmetrics: 127.0.0.1:9108\npure: true\nno-route: true\n")
	cfg, err := parseRunFlags([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics != "127.0.0.1:9108" || !cfg.Pure || !cfg.NoRoute || cfg.ConfigFile != p {
		t.Errorf("parseRunFlags(--config) = %+v, want the file's metrics, pure, no-route", cfg)
	}
	cfg, err = parseRunFlags([]string{"--config", p, "--metrics", "127.0.0.1:9200", "--pure=false", "--prefix", "198.51.100.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics != "127.0.0.1:9200" || cfg.Pure || !cfg.NoRoute || !slices.Equal(cfg.Prefixes, []string{"198.51.100.0/24"}) {
		t.Errorf("parseRunFlags(--config, flags) = %+v, want the flags' metrics, pure and prefix", cfg)
	}
	if _, err := (&runConfig{Prefixes: []string{"192.0.2.0/24"}, Queues: 1, MaxConns: 1, Tag: "x", LogLevel: "info", Metrics: "nonsense"}).Validate(); err == nil {
		t.Errorf("validate(--metrics nonsense) = nil, want an error")
	}
}
