package main

import (
	"strings"
	"testing"
)

// TestPprofLoopbackOnly checks that --pprof binds to loopback unless
// --pprof-any says otherwise, both on the command line and in a config
// file check.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		any     bool
		refused bool
	}{
		{"127.0.0.1:6060", false, false},
		{"[::1]:6060", false, false},
		{"localhost:6060", false, false},
		{"127.0.0.2:6060", false, false},
		{":6060", false, true},
		{"0.0.0.0:6060", false, true},
		{"[::]:6060", false, true},
		{"192.0.2.1:6060", false, true},
		{"[::ffff:127.0.0.1]:6060", false, false}, // Go listens on 127.0.0.1
		{"example.org:6060", false, true},
		{":6060", true, false},
		{"192.0.2.1:6060", true, false},
	} {
		args := []string{"--prefix", "192.0.2.0/24", "--pprof", tc.addr}
		if tc.any {
			args = append(args, "--pprof-any")
		}
		cfg, err := parseRunFlags(args)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		_, err = cfg.Validate()
		if refused := err != nil && strings.Contains(err.Error(), "--pprof-any"); refused != tc.refused {
			t.Errorf("--pprof %s (any %v): validate() = %v, want refused %v", tc.addr, tc.any, err, tc.refused)
		}
	}
}
