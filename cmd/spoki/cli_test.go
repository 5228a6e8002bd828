package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the tests run this test binary as spoki itself: with
// SPOKI_CLI_TEST_MAIN=1 it is main, its exit code the real one.
func TestMain(m *testing.M) {
	if os.Getenv("SPOKI_CLI_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cliRun runs spoki's command line in the test process and returns its
// exit code, standard output (help, completion) and standard error.
func cliRun(t *testing.T, args ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	old := stdout
	stdout = &o
	defer func() { stdout = old }()
	code = runCommand(context.Background(), &e, args)
	return code, o.String(), e.String()
}

// cliPaths are every command and subcommand with flags or a help text.
func cliPaths() [][]string {
	var out [][]string
	for _, c := range commands {
		out = append(out, []string{c.name})
		if c.noFlags {
			continue
		}
		for _, s := range c.subs {
			out = append(out, []string{c.name, s})
		}
	}
	return out
}

// goStyle matches what Go's flag.PrintDefaults writes and the help must
// not: one-dash flags with their type as "value", or "Usage of".
var goStyle = regexp.MustCompile(`(?m)^\s+-[a-z][\w-]* value\b|^Usage of |^\s+-[a-z][\w-]*( \w+)?$`)

// TestHelpEveryCommand checks `spoki help PATH`, `spoki PATH --help` and
// `spoki PATH -h` for every command and subcommand: exit 0, the same text
// on stdout, nothing on stderr, a usage line, and every flag of the flag
// set listed once in the one style, its default at most once.
func TestHelpEveryCommand(t *testing.T) {
	for _, path := range cliPaths() {
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			code, viaHelp, errOut := cliRun(t, append([]string{"help"}, path...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("spoki help %s: exit %d, stderr %q", name, code, errOut)
			}
			for _, flagArg := range []string{"--help", "-h"} {
				code, out, errOut := cliRun(t, append(append([]string{}, path...), flagArg)...)
				if code != 0 || errOut != "" {
					t.Errorf("spoki %s %s: exit %d, stderr %q", name, flagArg, code, errOut)
				}
				if out != viaHelp {
					t.Errorf("spoki %s %s differs from spoki help %s:\n%s\n---\n%s", name, flagArg, name, out, viaHelp)
				}
			}
			if !strings.HasPrefix(viaHelp, "usage: spoki "+path[0]) {
				t.Errorf("help does not start with its usage line:\n%s", viaHelp)
			}
			if m := goStyle.FindString(viaHelp); m != "" {
				t.Errorf("help in Go's flag style (%q):\n%s", m, viaHelp)
			}
			_, flagsPart, hasFlags := strings.Cut(viaHelp, "\nflags:\n")
			for _, line := range strings.Split(strings.TrimRight(flagsPart, "\n"), "\n") {
				if !hasFlags || line == "" {
					continue
				}
				if strings.Count(line, "(default") > 1 {
					t.Errorf("default given twice: %q", line)
				}
				if !strings.HasPrefix(line, "  --") && !strings.HasPrefix(line, "    ") {
					t.Errorf("flag line not in the --name style: %q", line)
				}
			}
			for _, f := range cliFlags(t, path) {
				if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(f) + `( |$)`).MatchString(viaHelp) {
					t.Errorf("flag %s is not in the help:\n%s", f, viaHelp)
				}
			}
		})
	}
	if code, out, _ := cliRun(t, "help"); code != 0 || !strings.Contains(out, "completion") || !strings.Contains(out, "usage: spoki COMMAND") {
		t.Errorf("spoki help: exit %d:\n%s", code, out)
	}
}

// cliFlags returns the flags of a command path, read from its flag set as
// the completion does.
func cliFlags(t *testing.T, path []string) []string {
	t.Helper()
	for _, e := range completionTable(context.Background()) {
		if e.path == strings.Join(path, " ") {
			return e.flags[:len(e.flags)-1] // without the --help every entry has
		}
	}
	return nil
}

// TestUsageErrors checks that every kind of usage mistake exits 2 with one
// line on stderr that names the command once, says what was wrong and
// where the help is.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // a part of the message
		help string // the help it points to
	}{
		{[]string{"nonsense"}, `unknown command "nonsense"`, "spoki help"},
		{[]string{"help", "nonsense"}, `unknown command "nonsense"`, "spoki help help"},
		{[]string{"run", "--no-such-flag"}, "unknown flag --no-such-flag", "spoki help run"},
		{[]string{"run"}, "at least one --prefix is required", "spoki help run"},
		{[]string{"run", "--prefix", "192.0.2.0/24", "--idle-timeout", "5"}, `--idle-timeout "5": want a duration like 5s`, "spoki help run"},
		{[]string{"run", "--prefix", "192.0.2.0/24", "--queues", "two"}, `--queues "two": want a whole number`, "spoki help run"},
		{[]string{"run", "--prefix", "192.0.2.0/24", "--queues", "0"}, "--queues", "spoki help run"},
		{[]string{"run", "--prefix", "192.0.2.0/24", "--phase-memory", "lots"}, `--phase-memory "lots"`, "spoki help run"},
		{[]string{"run", "--prefix", "nonsense"}, "nonsense", "spoki help run"},
		{[]string{"run", "--prefix", "192.0.2.0/24", "extra"}, "unexpected arguments", "spoki help run"},
		{[]string{"run", "--tag"}, "--tag needs a value", "spoki help run"},
		{[]string{"echo"}, "at least one --prefix", "spoki help echo"},
		{[]string{"lab", "nonsense"}, `unknown subcommand "nonsense"`, "spoki help lab"},
		{[]string{"lab", "demo", "--bogus"}, "unknown flag --bogus", "spoki help lab demo"},
		{[]string{"probe"}, "missing subcommand", "spoki help probe"},
		{[]string{"probe", "syn"}, "want --prefix and --count, or --target", "spoki help probe syn"},
		{[]string{"probe", "flood", "--port", "x"}, `--port "x"`, "spoki help probe flood"},
		{[]string{"probe", "http", "--timeout", "soon", "http://192.0.2.1/"}, `--timeout "soon": want a duration`, "spoki help probe http"},
		{[]string{"scenario"}, "missing subcommand", "spoki help scenario"},
		{[]string{"scenario", "replay"}, "want one CAPTURE file", "spoki help scenario replay"},
		{[]string{"scenario", "replay", "--src4", "2001:db8::1", "x.pcap"}, "want an IPv4 address", "spoki help scenario replay"},
		{[]string{"scenario", "run"}, "want a FILE (or --builtin)", "spoki help scenario run"},
		{[]string{"assemble", "dir"}, "--start and --tag are required", "spoki help assemble"},
		{[]string{"assemble", "--start", "soon", "--tag", "t", "dir"}, "--start", "spoki help assemble"},
		{[]string{"urls", "--hex=maybe"}, `--hex "maybe": want true or false`, "spoki help urls"},
		{[]string{"download"}, "want at least one INPUT", "spoki help download"},
		{[]string{"download", "--max-bytes", "huge", "x"}, `--max-bytes "huge"`, "spoki help download"},
		{[]string{"download", "--kafka", "127.0.0.1:9092"}, "--kafka needs --group", "spoki help download"},
		{[]string{"report"}, "want at least one INPUT", "spoki help report"},
		{[]string{"report", "--top", "0", "x"}, "must be positive", "spoki help report"},
		{[]string{"config"}, "missing subcommand", "spoki help config"},
		{[]string{"config", "verify"}, `unknown subcommand "verify"`, "spoki help config"},
		{[]string{"config", "check"}, "want one FILE", "spoki help config check"},
		{[]string{"completion"}, "want one shell", "spoki help completion"},
		{[]string{"completion", "fish"}, `unknown shell "fish"`, "spoki help completion"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := cliRun(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing (the help is one command away)", out)
			}
			cliCheckMessage(t, tc.args[0], errOut, tc.want)
			if !strings.Contains(errOut, "(see '"+tc.help+"')") {
				t.Errorf("stderr %q does not point to %q", errOut, tc.help)
			}
		})
	}
}

// cliCheckMessage checks an error message: one line, "spoki CMD..." with
// the command named once, and the part wanted.
func cliCheckMessage(t *testing.T, cmd, errOut, want string) {
	t.Helper()
	if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
		t.Errorf("stderr has not exactly one line: %q", errOut)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr %q does not say %q", errOut, want)
	}
	if strings.Contains(errOut, "spoki: spoki") || strings.Contains(errOut, "spoki spoki") {
		t.Errorf("stderr names spoki twice: %q", errOut)
	}
	if _, known := lookup(cmd); known {
		if !strings.HasPrefix(errOut, "spoki "+cmd) {
			t.Errorf("stderr %q does not start with spoki %s", errOut, cmd)
		}
		msg, _, _ := strings.Cut(errOut, " (see '")
		if n := strings.Count(msg, cmd); n != 1 {
			t.Errorf("stderr %q names %s %d times, want once", errOut, cmd, n)
		}
	}
	if strings.Contains(errOut, "parse error") {
		t.Errorf("stderr %q says only \"parse error\"", errOut)
	}
}

// TestFailuresExit1 checks that a command that was invoked right but
// failed exits 1, with one line naming the command once.
func TestFailuresExit1(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("prefix: [192.0.2.0/24]\nqeues: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"report", "/nonexistent"}, "spoki report: input: stat /nonexistent"},
		{[]string{"download", "--out", dir, filepath.Join(dir, "missing")}, "spoki download: input: stat"},
		{[]string{"assemble", "--start", "2021-10-13T21", "--tag", "t", "--out", dir, filepath.Join(dir, "missing")}, "spoki assemble"},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, "spoki config check"},
		{[]string{"config", "check", bad}, "1 problem"},
		{[]string{"scenario", "replay", "--netns", "spoki-cli-test-none", filepath.Join(dir, "missing.pcap")}, "spoki scenario replay"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, _, errOut := cliRun(t, tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1 (stderr %q)", code, errOut)
			}
			cliCheckMessage(t, tc.args[0], errOut, tc.want)
			if strings.Contains(errOut, "(see 'spoki help") {
				t.Errorf("a failure points to the help: %q", errOut)
			}
			if tc.args[0] == "report" && strings.Contains(errOut, "download") {
				t.Errorf("report's error names download: %q", errOut)
			}
		})
	}
}

// TestRealBinaryExitCodes runs this test binary as spoki (TestMain) for
// the exit codes the process really returns.
func TestRealBinaryExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"help", "run"}, 0},
		{[]string{"run", "--help"}, 0},
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"run", "--no-such-flag"}, 2},
		{[]string{"run"}, 2},
		{[]string{"run", "--prefix", "192.0.2.0/24", "--idle-timeout", "5"}, 2},
		{[]string{"report", "/nonexistent"}, 1},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), "SPOKI_CLI_TEST_MAIN=1")
		var e bytes.Buffer
		cmd.Stderr = &e
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("spoki %s: exit %d, want %d (stderr %q)", strings.Join(tc.args, " "), code, tc.code, e.String())
		}
	}
}

// TestCompletion checks the completion scripts: bash parses them and,
// sourced, completes commands, subcommands and each command's own flags;
// the zsh script has every command and flag too.
func TestCompletion(t *testing.T) {
	code, script, errOut := cliRun(t, "completion", "bash")
	if code != 0 || errOut != "" {
		t.Fatalf("completion bash: exit %d, %q", code, errOut)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bash: %v", err)
		}
		t.Skip("no bash")
	}
	file := filepath.Join(t.TempDir(), "spoki.bash")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS as bash splits the line, the cursor on the last word.
		var q []string
		for _, w := range words {
			q = append(q, "'"+w+"'")
		}
		prog := "source " + file + "\nCOMP_WORDS=(" + strings.Join(q, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_spoki\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	has := func(got []string, want string) bool {
		for _, g := range got {
			if g == want {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"spoki", "sc"}, "scenario"},
		{[]string{"spoki", "compl"}, "completion"},
		{[]string{"spoki", "scenario", "re"}, "replay"},
		{[]string{"spoki", "scenario", "replay", "--max-"}, "--max-gap"},
		{[]string{"spoki", "run", "--stats-"}, "--stats-interval"},
		{[]string{"spoki", "run", "--prefix", "192.0.2.0/24", "--synack-r"}, "--synack-rate"},
		{[]string{"spoki", "download", "--max-s"}, "--max-store"},
		{[]string{"spoki", "probe", "flood", "--ir"}, "--irregular"},
		{[]string{"spoki", "help", "ass"}, "assemble"},
		{[]string{"spoki", "completion", "z"}, "zsh"},
	} {
		got := complete(tc.words...)
		if !has(got, tc.want) {
			t.Errorf("completing %q: %v, want %s", tc.words, got, tc.want)
		}
	}
	if got := complete("spoki", "report", "--max-g"); has(got, "--max-gap") {
		t.Errorf("report completes scenario replay's flags: %v", got)
	}

	code, zsh, _ := cliRun(t, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef spoki") {
		t.Fatalf("completion zsh: exit %d:\n%s", code, zsh)
	}
	for _, c := range commands {
		if !strings.Contains(zsh, `"`+c.name+`"`) {
			t.Errorf("zsh script lacks %s", c.name)
		}
	}
	var cfg runConfig
	var p, pp prefixList
	runFlags(&cfg, &p, &pp).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(zsh, "--"+f.Name+" ") && !strings.Contains(zsh, "--"+f.Name+")") {
			t.Errorf("zsh script lacks run's --%s", f.Name)
		}
	})
}
