package main

import (
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/records"
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
	keys := configKeys()
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
			name: "phase-memory and pprof at their lines",
			yaml: "prefix: [192.0.2.0/24]\nphase-memory: 1KiB\npprof: 0.0.0.0:6060\n",
			want: []string{
				"2: phase-memory: 1KiB out of range 64KiB-16GiB",
				"3: pprof: 0.0.0.0:6060 is not a loopback address",
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
			cfg := defaultRunConfig()
			probs := checkConfig([]byte(tc.yaml), &cfg, true)
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if len(probs) != len(tc.want) {
				t.Fatalf("checkConfig = %d problems:\n%s\nwant %d:\n%s", len(probs),
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

// TestConfigCheckCommand checks the command's output and exit status.
func TestConfigCheckCommand(t *testing.T) {
	good := writeConfig(t, "prefix: [192.0.2.0/24]\n")
	if err := configMain([]string{"check", good}); err != nil {
		t.Errorf("config check of a good file = %v, want nil", err)
	}
	bad := writeConfig(t, "prefix: [192.0.2.0/24]\nqeues: 2\nmax-conns: 0\n")
	err := configMain([]string{"check", bad})
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
	if _, err := (&runConfig{Prefixes: []string{"192.0.2.0/24"}, Queues: 1, MaxConns: 1, Tag: "x", LogLevel: "info", Metrics: "nonsense"}).validate(); err == nil {
		t.Errorf("validate(--metrics nonsense) = nil, want an error")
	}
}

// TestPlanReload checks which changes a SIGHUP applies and which wait for
// a restart.
func TestPlanReload(t *testing.T) {
	base := defaultRunConfig()
	base.Prefixes = []string{"192.0.2.0/24"}
	for _, tc := range []struct {
		name             string
		change           func(c *runConfig)
		apply, restart   []string
		registry, unused bool
	}{
		{name: "nothing", change: func(c *runConfig) {}},
		{name: "empty list equals none", change: func(c *runConfig) { c.PurePrefixes = []string{}; c.Handlers = map[string]handlerConfig{} }},
		{name: "pure", change: func(c *runConfig) { c.Pure = true }, apply: []string{"pure"}, registry: true},
		{name: "handlers", change: func(c *runConfig) {
			c.Handlers = map[string]handlerConfig{"telnet": {Disabled: true}}
		}, apply: []string{"handlers"}, registry: true},
		{name: "log level, metrics and stats", change: func(c *runConfig) {
			c.LogLevel, c.Metrics, c.StatsInterval = "debug", "127.0.0.1:1", 0
		}, apply: []string{"log-level", "stats-interval", "metrics"}},
		{name: "restart only", change: func(c *runConfig) {
			c.Prefixes = []string{"198.51.100.0/24"}
			c.Queues++
			c.LogDir = "/elsewhere"
			c.IdleTimeout = time.Minute
		}, restart: []string{"prefix", "queues", "log-dir", "idle-timeout"}},
		{name: "both", change: func(c *runConfig) { c.MaxConns = 7; c.PurePrefixes = []string{"192.0.2.0/25"} },
			apply: []string{"pure-prefix"}, restart: []string{"max-conns"}, registry: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			next.Handlers = nil
			tc.change(&next)
			plan := planReload(base, next)
			keys := func(cs []configChange) []string {
				var out []string
				for _, c := range cs {
					out = append(out, c.Key)
				}
				return out
			}
			if got := keys(plan.Apply); !slices.Equal(got, tc.apply) {
				t.Errorf("planReload apply = %v, want %v", got, tc.apply)
			}
			if got := keys(plan.Restart); !slices.Equal(got, tc.restart) {
				t.Errorf("planReload restart = %v, want %v", got, tc.restart)
			}
			if got := plan.has("handlers", "pure", "pure-prefix"); got != tc.registry {
				t.Errorf("plan.has(registry keys) = %v, want %v", got, tc.registry)
			}
			// What runs afterwards: the reloadable keys of next, the rest
			// of base.
			after := applyReloadable(base, next)
			if after.Queues != base.Queues || after.LogDir != base.LogDir || after.Pure != next.Pure || after.LogLevel != next.LogLevel {
				t.Errorf("applyReloadable = %+v, want base's fixed keys and next's reloadable ones", after)
			}
			if again := planReload(after, next); len(again.Apply) != 0 || len(again.Restart) != len(tc.restart) {
				t.Errorf("planReload after applying = %+v, want only the restart changes again", again)
			}
		})
	}
}

// TestMuxSet checks that a swapped-in Mux serves new connections and that
// the counters of every Mux add up.
func TestMuxSet(t *testing.T) {
	var s muxSet
	for range 2 {
		m, err := handlers.NewMux(handlers.MuxConfig{
			Registry: handlers.NewRegistry(handlers.Func("generic", func(context.Context, *handlers.Conn) (any, error) { return nil, nil })),
			Emit:     func(*records.Session) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.swap(m)
		m.Stats().Errors.Add(1)
	}
	if got := s.snapshot().Errors; got != 2 {
		t.Errorf("snapshot().Errors = %d, want 2 (one per Mux)", got)
	}
	if s.cur.Load() != s.all[1] {
		t.Errorf("current Mux is not the last swapped in")
	}
}
