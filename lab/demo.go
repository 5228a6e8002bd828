package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Demo settings.
const (
	// DemoTag is the --tag of the spoki that the demo and Up run.
	DemoTag = "lab"
	// demoTimeout bounds the whole demo: `make demo` must end in under two
	// minutes whatever spoki does.
	demoTimeout = 90 * time.Second
	// readyTimeout bounds spoki's start-up.
	readyTimeout = 20 * time.Second
	// probeTimeout bounds each probe command.
	probeTimeout = 30 * time.Second
	// demoSYNCount is how many random targets the demo's SYN probe hits.
	demoSYNCount = 20
	// demoSYNWait is the SYN probe's listening time after its last SYN.
	demoSYNWait = 2 * time.Second
)

// DemoConfig says how to run the demo. Zero values mean defaults.
type DemoConfig struct {
	// Bin is the spoki binary run in the namespaces; empty means the
	// running executable.
	Bin string
	// KeepLogs, when set, is the log directory (created if missing) and is
	// kept; otherwise a temporary directory is used and removed.
	KeepLogs string
	// Out receives the progress; nil means standard output.
	Out io.Writer
}

// Demo runs the lab end to end: it builds a lab, starts `spoki run` in the
// telescope namespace, runs the HTTP, line and SYN probes from the scanner
// namespace, stops spoki, prints the event log as a table and checks that
// the expected events are there. It removes everything it created, also on
// failure, and returns ErrDemoFailed (after printing why) when spoki failed
// or events are missing.
func Demo(ctx context.Context, cfg DemoConfig) (err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }
	bin, err := spokiBinary(cfg.Bin)
	if err != nil {
		return err
	}
	logDir, removeLogs, err := logDirectory(cfg.KeepLogs)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, removeLogs()) }()

	step("creating the lab")
	l, err := New(ctx, Config{})
	if err != nil {
		return err
	}
	defer func() {
		step("removing namespaces %s", strings.Join(l.Namespaces(), ", "))
		err = errors.Join(err, l.Close())
	}()
	step("namespaces: telescope %s, scanner %s (%s %s -> %s %s)", l.Telescope, l.Scanner,
		l.ScannerIface, ScannerAddr4, l.TelescopeIface, TelescopeAddr4)

	args := spokiRunArgs(l, logDir)
	step("starting in %s: spoki %s", l.Telescope, strings.Join(args, " "))
	spoki, err := l.Start(l.Telescope, bin, args...)
	if err != nil {
		return err
	}
	if err := spoki.WaitForLine(IsReadyLine, "ready", readyTimeout); err != nil {
		return err
	}
	step("spoki is ready (pid %d)", spoki.Pid())

	var failures []string
	probe := func(args ...string) {
		step("probe from %s: spoki probe %s", l.Scanner, strings.Join(quoteArgs(args), " "))
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		cmd := l.Command(pctx, l.Scanner, bin, append([]string{"probe"}, args...)...)
		outb, err := cmd.CombinedOutput()
		writeIndented(out, outb)
		if err != nil {
			failures = append(failures, fmt.Sprintf("probe %s: %v", args[0], err))
		}
	}
	http4 := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.80"), 80)
	http6 := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:5b0::80"), 8080)
	telnet := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.23"), 23)
	synSeed := uint64(time.Now().UnixNano())
	synTargets, err := SYNTargets([]netip.Prefix{Prefix4}, demoSYNCount, synSeed)
	if err != nil {
		return err
	}
	probe("http", "http://"+http4.String()+"/")
	probe("http", "http://"+http6.String()+"/")
	probe("line", telnet.String(), "root")
	probe("syn", "--prefix", Prefix4.String(), "--count", fmt.Sprint(demoSYNCount),
		"--seed", fmt.Sprint(synSeed), "--wait", demoSYNWait.String())

	step("stopping spoki (SIGTERM)")
	if err := spoki.Stop(); err != nil {
		failures = append(failures, fmt.Sprintf("spoki: %v", err))
		fmt.Fprintf(out, "spoki's last output:\n%s\n", spoki.tail(30))
	}

	step("event log in %s", logDir)
	events, err := ReadEvents(logDir, DemoTag)
	if err != nil {
		failures = append(failures, err.Error())
	}
	WriteEventTable(out, events)

	failures = append(failures, checkDemoEvents(events, http4, http6, telnet, synTargets)...)
	if len(failures) > 0 {
		step("FAILED")
		for _, f := range failures {
			fmt.Fprintf(out, "  - %s\n", f)
		}
		return fmt.Errorf("%w: %d problems", ErrDemoFailed, len(failures))
	}
	step("ok: every probe was answered and recorded")
	return nil
}

// checkDemoEvents lists what is missing from the demo's event log.
func checkDemoEvents(events []Event, http4, http6, telnet netip.AddrPort, synTargets []netip.AddrPort) []string {
	var missing []string
	hasSession := func(dest netip.AddrPort, match func(payload string) bool) bool {
		return slices.ContainsFunc(events, func(e Event) bool {
			p := string(e.Payload)
			if p == "" {
				p = e.PayloadPrintable
			}
			return e.EventType == "session" && e.Dest() == dest && match(p)
		})
	}
	isGET := func(p string) bool { return strings.HasPrefix(p, "GET / HTTP/1.1") }
	for _, dest := range []netip.AddrPort{http4, http6} {
		if !hasSession(dest, isGET) {
			missing = append(missing, fmt.Sprintf("no session to %s with the HTTP request", dest))
		}
	}
	if !hasSession(telnet, func(p string) bool { return strings.Contains(p, "root") }) {
		missing = append(missing, fmt.Sprintf("no session to %s with the line %q", telnet, "root"))
	}
	syns := 0
	synDests := map[netip.AddrPort]bool{}
	for _, e := range events {
		if e.EventType == "syn" {
			syns++
			synDests[e.Dest()] = true
		}
	}
	if syns < len(synTargets) {
		missing = append(missing, fmt.Sprintf("%d syn events, want at least %d", syns, len(synTargets)))
	}
	for _, t := range synTargets {
		if !synDests[t] {
			missing = append(missing, fmt.Sprintf("no syn event for probed target %s", t))
		}
	}
	return missing
}

// UpConfig says how to run Up. Zero values mean defaults.
type UpConfig struct {
	// Bin is the spoki binary; empty means the running executable.
	Bin string
	// LogDir, when set, is spoki's log directory (created if missing) and
	// is kept; otherwise a temporary directory is used.
	LogDir string
	// Keep keeps the temporary log directory at the end.
	Keep bool
	// ThreadedNAPI applies the host setting against livelock (README "Host
	// settings"): the telescope host's receive work on its uplink runs in a
	// NAPI kernel thread (Config.ThreadedNAPI). The CLI sets it by default.
	ThreadedNAPI bool
	// Out receives the instructions and spoki's output; nil means
	// standard output.
	Out io.Writer
}

// Up builds a lab with a sink, starts spoki in it, prints the namespace
// names and example commands, and waits until ctx is done (the CLI cancels
// it on SIGINT or SIGTERM) or spoki exits. Then it stops spoki and removes
// everything.
func Up(ctx context.Context, cfg UpConfig) (err error) {
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	bin, err := spokiBinary(cfg.Bin)
	if err != nil {
		return err
	}
	logDir, removeLogs, err := logDirectory(cfg.LogDir)
	if err != nil {
		return err
	}
	if cfg.Keep {
		removeLogs = func() error { return nil }
	}
	defer func() { err = errors.Join(err, removeLogs()) }()

	l, err := New(ctx, Config{Sink: true, Output: out, ThreadedNAPI: cfg.ThreadedNAPI})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintf(out, "removing namespaces %s\n", strings.Join(l.Namespaces(), ", "))
		err = errors.Join(err, l.Close())
	}()
	spoki, err := l.Start(l.Telescope, bin, spokiRunArgs(l, logDir)...)
	if err != nil {
		return err
	}
	if err := spoki.WaitForLine(IsReadyLine, "ready", readyTimeout); err != nil {
		return err
	}
	scan := "ip netns exec " + l.Scanner
	if cfg.ThreadedNAPI {
		pids, err := l.UplinkNAPIThreads()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nthreaded NAPI on %s: receive work in kernel thread(s) %v (README \"Host settings\")\n", l.TelescopeIface, pids)
	}
	fmt.Fprintf(out, `
lab %s is up; spoki (pid %d) logs to %s
  telescope namespace: %s (prefixes %s, %s on TUN %s)
  scanner namespace:   %s (%s, %s on %s)
  sink namespace:      %s (swallows replies to %s, %s)
try:
  %s curl http://198.51.100.80/
  %s curl -g 'http://[2001:db8:5b0::80]:8080/'
  %s %s probe line 198.51.100.23:23 root
  %s %s probe syn --prefix %s --count 10
  %s %s probe flood --iface %s --prefix %s --rate 10000 --duration 5s
  tail -f %s/%s.events.*.jsonl
stop with Ctrl-C (SIGINT) or SIGTERM
`, l.Name, spoki.Pid(), logDir,
		l.Telescope, Prefix4, Prefix6, l.TUN,
		l.Scanner, ScannerAddr4, ScannerAddr6, l.ScannerIface,
		l.Sink, FloodSrc4, FloodSrc6,
		scan, scan, scan, bin, scan, bin, Prefix4, scan, bin, l.ScannerIface, Prefix4,
		logDir, DemoTag)

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "stopping spoki")
		return spoki.Stop()
	case <-spoki.Done():
		return fmt.Errorf("lab: spoki exited early: %w", errors.Join(spoki.Stop(), ErrExited))
	}
}

// spokiRunArgs returns the arguments of the `spoki run` that the demo and
// Up start.
func spokiRunArgs(l *Lab, logDir string) []string {
	return []string{"run", "--prefix", Prefix4.String(), "--prefix", Prefix6.String(),
		"--tun", l.TUN, "--log-dir", logDir, "--tag", DemoTag}
}

// spokiBinary returns bin, or the running executable when bin is empty.
func spokiBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("lab: find spoki binary: %w", err)
	}
	return exe, nil
}

// logDirectory creates dir, or a temporary directory when dir is empty; the
// returned function removes the temporary one.
func logDirectory(dir string) (string, func() error, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("lab: create log dir: %w", err)
		}
		return dir, func() error { return nil }, nil
	}
	tmp, err := os.MkdirTemp("", "spoki-lab-")
	if err != nil {
		return "", nil, fmt.Errorf("lab: create log dir: %w", err)
	}
	return tmp, func() error {
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("lab: remove log dir: %w", err)
		}
		return nil
	}, nil
}

var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// IsReadyLine reports whether a line of spoki's standard error is its
// `ready` log line, in slog's text format (msg=ready) or tint's (ready as
// the message word, possibly coloured).
func IsReadyLine(line string) bool {
	if strings.Contains(line, "msg=ready") {
		return true
	}
	return slices.Contains(strings.Fields(ansiEscape.ReplaceAllString(line, "")), "ready")
}

// writeIndented copies a command's output to w, indented.
func writeIndented(w io.Writer, b []byte) {
	for _, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if len(line) > 0 {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

// quoteArgs quotes arguments that a shell would split, for display.
func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			q[i] = fmt.Sprintf("%q", a)
		}
	}
	return q
}
