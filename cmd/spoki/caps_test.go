package main

import (
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/netstack"
)

// TestSourceCapFlags checks the flags of the per-source caps and the
// listener cap: their defaults, the config file keys, and that 0 is
// refused (a value >= --max-conns is how a cap is turned off).
func TestSourceCapFlags(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnsPerIP != netstack.DefaultMaxConnsPerIP || cfg.MaxConnsPerNet != netstack.DefaultMaxConnsPerNet ||
		cfg.MaxListeners != netstack.DefaultMaxListeners {
		t.Errorf("defaults = %d %d %d", cfg.MaxConnsPerIP, cfg.MaxConnsPerNet, cfg.MaxListeners)
	}
	p := writeConfig(t, "prefix: [192.0.2.0/24]\nmax-conns-per-ip: 5\nmax-conns-per-net: 9\nmax-listeners: 77\n")
	cfg, err = parseRunFlags([]string{"--config", p, "--max-conns-per-net", "11"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnsPerIP != 5 || cfg.MaxConnsPerNet != 11 || cfg.MaxListeners != 77 {
		t.Errorf("file and flags = %d %d %d, want 5 11 77", cfg.MaxConnsPerIP, cfg.MaxConnsPerNet, cfg.MaxListeners)
	}
	if _, err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	for _, flag := range []string{"--max-conns-per-ip", "--max-conns-per-net", "--max-listeners"} {
		cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24", flag, "0"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s 0: validate = %v, want an error naming the flag", flag, err)
		}
	}
}
