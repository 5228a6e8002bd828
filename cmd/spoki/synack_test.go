package main

import (
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/netstack"
)

// TestSYNACKFlags checks the --synack-* flags: their defaults reach the
// netstack, the config file takes the same keys, and bad values fail
// validation before anything is set up.
func TestSYNACKFlags(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--prefix", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.SYNACKLimits(), netstack.DefaultSYNACKLimits(); got != want {
		t.Errorf("default limits = %+v, want %+v", got, want)
	}
	cfg, err = parseRunFlags([]string{"--config", writeConfig(t, "prefix: [192.0.2.0/24]\nsynack-irregular-rate: 7\nsynack-table: 64KiB\n"),
		"--synack-burst", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.SYNACKLimits(); l.Irregular.Rate != 7 || l.Regular.Burst != 9 || l.TableEntries != 4096 {
		t.Errorf("limits from file and flags = %+v, want irregular rate 7, regular burst 9, 4096 entries", l)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"both off, no table", []string{"--synack-rate", "0", "--synack-irregular-rate", "0", "--synack-table", "0"}, ""},
		{"rate without burst", []string{"--synack-irregular-burst", "0"}, "burst"},
		{"negative rate", []string{"--synack-rate", "-1"}, "negative"},
		{"table too small", []string{"--synack-table", "8"}, "synack-table"},
		{"table too big", []string{"--synack-table", "1GiB"}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseRunFlags(append([]string{"--prefix", "192.0.2.0/24"}, tc.args...))
			if err == nil {
				_, err = cfg.Validate()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
