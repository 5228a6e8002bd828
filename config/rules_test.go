package config

import (
	"slices"
	"strings"
	"testing"
)

// TestRulesKeys checks the rule table against the settings: a rule the
// file applies is reported at a YAML key, and a rule of the flags names a
// key (or, for the --synack-* group, a prefix of keys) that exists.
func TestRulesKeys(t *testing.T) {
	keys := Keys()
	for _, r := range rules {
		if base, group := strings.CutSuffix(r.key, "*"); group {
			if r.scope&inFile != 0 || !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, base) }) {
				t.Errorf("rule %s: a group of keys must be of the flags only and match a key", r.key)
			}
			continue
		}
		if !slices.Contains(keys, r.key) {
			t.Errorf("rule %s: no such key", r.key)
		}
	}
}

// TestRulesBothWays checks that a rule written once gives the flag's
// message in Validate and the key's message in Check, with the same text.
func TestRulesBothWays(t *testing.T) {
	for _, tc := range []struct {
		yaml, flagMsg, fileMsg string
		set                    func(c *Run)
	}{
		{"queues: 0\n", "run: --queues 0 out of range 1-64", "queues: 0 out of range 1-64", func(c *Run) { c.Queues = 0 }},
		{"icmp: ping\n", `run: --icmp "ping": off or echo`, `icmp: "ping": off or echo`, func(c *Run) { c.ICMP = "ping" }},
		{"udp: on\n", `run: --udp "on": off or reply`, `udp: "on": off or reply`, func(c *Run) { c.UDP = "on" }},
		{"request-timeout: 0s\n", "run: --request-timeout 0s must be positive", "request-timeout: must be positive", func(c *Run) { c.RequestTimeout = 0 }},
		{"log-level: loud\n", `bad log level "loud" (debug, info, warn, error)`, `log-level: bad log level "loud" (debug, info, warn, error)`, func(c *Run) { c.LogLevel = "loud" }},
		{"metrics: nonsense\n", `run: --metrics: bad address "nonsense" (want HOST:PORT)`, `metrics: bad address "nonsense" (want HOST:PORT)`, func(c *Run) { c.Metrics = "nonsense" }},
	} {
		c := Default()
		c.Prefixes = []string{"192.0.2.0/24"}
		tc.set(&c)
		if _, err := c.Validate(); err == nil || err.Error() != tc.flagMsg {
			t.Errorf("Validate = %v, want %q", err, tc.flagMsg)
		}
		f := Default()
		probs := Check([]byte("prefix: [192.0.2.0/24]\n"+tc.yaml), &f, true)
		if len(probs) != 1 || probs[0].Line != 2 || probs[0].Msg != tc.fileMsg {
			t.Errorf("Check(%q) = %v, want line 2: %q", tc.yaml, probs, tc.fileMsg)
		}
	}
}
