package config

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConfigCheck checks that `config check` finds every problem of a file
// at its line, not just the first.
func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		// want holds "LINE: substring" for each expected problem, in order.
		want []string
	}{
		{
			name: "valid file",
			yaml: `prefix: [192.0.2.0/24, 2001:db8:5b0::/48]
log-dir: /var/lib/spoki
metrics: 127.0.0.1:9108
pure-prefix: [192.0.2.128/25]
handlers:
  http: {ports: [80, 8080, 8888]}
  ssh: {prefixes: [192.0.2.0/25]}
  telnet: {disabled: true}
`,
		},
		{
			name: "empty file",
			yaml: "",
			want: []string{"0: no prefix"},
		},
		{
			name: "syntax error",
			yaml: "prefix: [192.0.2.0/24\nqueues: 2\n",
			want: []string{"1: did not find expected"},
		},
		{
			name: "not a map",
			yaml: "- prefix\n",
			want: []string{"1: must map keys"},
		},
		{
			name: "every problem, each at its line",
			yaml: `prefix:
  - 192.0.2.0/24
  - 192.0.2.0/25
  - nonsense
qeues: 2
queues: 100
max-conns: -1
idle-timeout: soon
log-level: loud
tag: a.b
metrics: localhost
handlers:
  gopher: {ports: [70]}
  ssh: {ports: [80], colour: blue}
  http: {prefixes: [10.0.0.0/8]}
prefix: [198.51.100.0/24]
`,
			want: []string{
				`3: prefix: 192.0.2.0/25 overlaps 192.0.2.0/24`,
				`4: prefix:`,
				`5: unknown key "qeues" (did you mean "queues"?)`,
				`6: queues: 100 out of range`,
				`7: max-conns: -1 must be positive`,
				`8: idle-timeout: cannot unmarshal`,
				`9: log-level: bad log level "loud"`,
				`10: tag: "a.b"`,
				`11: metrics: bad address`,
				`13: unknown handler "gopher"`,
				`14: handlers: ssh: unknown key "colour"`,
				`15: handlers: http: prefixes: 10.0.0.0/8 lies outside`,
				`16: key "prefix" repeated (first on line 1)`,
			},
		},
		{
			name: "host-name and community-id-seed at their lines",
			yaml: "prefix: [192.0.2.0/24]\nhost-name: \"a\\tb\"\ncommunity-id-seed: 65536\nalerts: false\n",
			want: []string{
				`2: host-name: "a\tb": at most 255 bytes, no control characters`,
				"3: community-id-seed: 65536 out of range 0-65535",
			},
		},
		{
			name: "phase-memory and pprof at their lines",
			yaml: "prefix: [192.0.2.0/24]\nphase-memory: 1KiB\npprof: 0.0.0.0:6060\n",
			want: []string{
				"2: phase-memory: 1KiB out of range 64KiB-16GiB",
				"3: pprof: 0.0.0.0:6060 is not a loopback address",
			},
		},
		{
			name: "caps, listeners, keep and the SYN-ACK table at their lines",
			yaml: "prefix: [192.0.2.0/24]\nkeep: -1h\nmax-conns-per-ip: 0\nmax-conns-per-net: 0\nmax-listeners: 0\nsynack-table: 1B\n",
			want: []string{
				"2: keep: -1h0m0s must not be negative",
				"3: max-conns-per-ip: 0 must be positive (>= --max-conns turns the cap off)",
				"4: max-conns-per-net: 0 must be positive (>= --max-conns turns the cap off)",
				"5: max-listeners: 0 must be positive",
				"6: synack-table: 1: at least 16 bytes",
			},
		},
		{
			name: "port conflict at the moved handler's port",
			yaml: "prefix: [192.0.2.0/24]\nhandlers:\n  ssh:\n    ports:\n      - 2222\n      - 80\n",
			want: []string{"6: port 80 claimed by both http and ssh"},
		},
		{
			name: "port conflict resolved by disjoint prefixes",
			yaml: `prefix: [192.0.2.0/24]
handlers:
  http: {prefixes: [192.0.2.0/25]}
  ssh: {ports: [80], prefixes: [192.0.2.128/25]}
`,
		},
		{
			name: "bad handler values",
			yaml: "handlers:\n  http: {ports: [0, 80, 80, 70000]}\n  tls: 443\n  generic: {}\n",
			want: []string{
				"0: no prefix",
				"2: handlers: http: ports: cannot unmarshal",
				"3: handlers: tls: want a map",
				`4: unknown handler "generic"`,
			},
		},
		{
			name: "port zero and repeats",
			yaml: "prefix: [192.0.2.0/24]\nhandlers:\n  http:\n    ports: [0, 81, 81]\n",
			want: []string{"4: handlers: http: port 0", "4: handlers: http: port 81 repeated"},
		},
		{
			name: "pure prefix outside the telescope",
			yaml: "prefix: [192.0.2.0/24]\npure-prefix: [198.51.100.0/24]\n",
			want: []string{"2: pure-prefix: 198.51.100.0/24 lies outside"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			probs := Check([]byte(tc.yaml), &cfg, true)
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if len(probs) != len(tc.want) {
				t.Fatalf("Check = %d problems:\n%s\nwant %d:\n%s", len(probs),
					strings.Join(got, "\n"), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				line, sub, _ := strings.Cut(w, ": ")
				if strconv.Itoa(probs[i].Line) != line || !strings.Contains(probs[i].Msg, sub) {
					t.Errorf("problem %d = %q, want line %s containing %q", i, got[i], line, sub)
				}
			}
		})
	}
}

// TestPlanReload checks which changes a SIGHUP applies and which wait for
// a restart.
func TestPlanReload(t *testing.T) {
	base := Default()
	base.Prefixes = []string{"192.0.2.0/24"}
	for _, tc := range []struct {
		name             string
		change           func(c *Run)
		apply, restart   []string
		registry, unused bool
	}{
		{name: "nothing", change: func(c *Run) {}},
		{name: "empty list equals none", change: func(c *Run) { c.PurePrefixes = []string{}; c.Handlers = map[string]Handler{} }},
		{name: "pure", change: func(c *Run) { c.Pure = true }, apply: []string{"pure"}, registry: true},
		{name: "handlers", change: func(c *Run) {
			c.Handlers = map[string]Handler{"telnet": {Disabled: true}}
		}, apply: []string{"handlers"}, registry: true},
		{name: "log level, metrics and stats", change: func(c *Run) {
			c.LogLevel, c.Metrics, c.StatsInterval = "debug", "127.0.0.1:1", 0
		}, apply: []string{"log-level", "stats-interval", "metrics"}},
		{name: "restart only", change: func(c *Run) {
			c.Prefixes = []string{"198.51.100.0/24"}
			c.Queues++
			c.LogDir = "/elsewhere"
			c.IdleTimeout = time.Minute
		}, restart: []string{"prefix", "queues", "log-dir", "idle-timeout"}},
		{name: "both", change: func(c *Run) { c.MaxConns = 7; c.PurePrefixes = []string{"192.0.2.0/25"} },
			apply: []string{"pure-prefix"}, restart: []string{"max-conns"}, registry: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			next.Handlers = nil
			tc.change(&next)
			plan := PlanReload(base, next)
			keys := func(cs []Change) []string {
				var out []string
				for _, c := range cs {
					out = append(out, c.Key)
				}
				return out
			}
			if got := keys(plan.Apply); !slices.Equal(got, tc.apply) {
				t.Errorf("PlanReload apply = %v, want %v", got, tc.apply)
			}
			if got := keys(plan.Restart); !slices.Equal(got, tc.restart) {
				t.Errorf("PlanReload restart = %v, want %v", got, tc.restart)
			}
			if got := plan.Has("handlers", "pure", "pure-prefix"); got != tc.registry {
				t.Errorf("plan.Has(registry keys) = %v, want %v", got, tc.registry)
			}
			// What runs afterwards: the Reloadable keys of next, the rest
			// of base.
			after := ApplyReloadable(base, next)
			if after.Queues != base.Queues || after.LogDir != base.LogDir || after.Pure != next.Pure || after.LogLevel != next.LogLevel {
				t.Errorf("ApplyReloadable = %+v, want base's fixed keys and next's Reloadable ones", after)
			}
			if again := PlanReload(after, next); len(again.Apply) != 0 || len(again.Restart) != len(tc.restart) {
				t.Errorf("PlanReload after applying = %+v, want only the restart changes again", again)
			}
		})
	}
}
