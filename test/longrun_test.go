package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// Settings of the long-running checks.
const (
	// lrConns is how many connections TestLongRunStaysFlat makes: enough
	// that a leak of one descriptor or goroutine per connection is
	// unmistakable, few enough for about a minute on two cores.
	lrConns = 100_000
	// lrWarmupConns come first, so that pools, timers and gVisor's
	// per-core goroutines exist before the baseline is taken.
	lrWarmupConns = 2_000
	// lrConcurrency is how many connections the client keeps open at once:
	// each lasts about 100 ms (the handler waits for the rest of a request),
	// so 256 give some 2,000 a second.
	lrConcurrency = 256
	// lrClientBudget bounds the client's run; what it did not finish by then
	// fails the test.
	lrClientBudget = 90 * time.Second
	// lrFDMargin and lrGoroutineMargin are the growth allowed from the
	// baseline: an hour rotation opens a few files, the pprof request has
	// its own goroutines.
	lrFDMargin        = 10
	lrGoroutineMargin = 20
	// lrSettleTimeout is how long the telescope gets to end its sessions.
	lrSettleTimeout = 30 * time.Second
	// lrPprofAddr is where the telescope serves pprof, in its namespace.
	lrPprofAddr = "127.0.0.1:6060"
	// lrClientEnv makes the test binary the connection client (see
	// TestLongRunClient); its value is "COUNT CONCURRENCY".
	lrClientEnv = "SPOKI_LR_CLIENT"
)

// TestLongRunStaysFlat makes 100,000 short connections to the telescope and
// checks that its open file descriptors and goroutines afterwards are what
// they were before: a telescope runs for months, and anything kept per
// connection would exhaust it.
func TestLongRunStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long-running test (about a minute)")
	}
	l := e2eNewLab(t, lab.Config{}, "curl")
	// One client address makes every connection, 256 at once and over a
	// thousand a second: the per-source caps and the per-source SYN-ACK
	// limit (which their own tests check) would hold it back.
	tel := e2eStartTelescope(t, l, "--pprof", lrPprofAddr, "--max-conns-per-ip", "4096", "--max-conns-per-net", "4096", "--synack-rate", "0")
	pid := tel.proc.Pid()

	lrRunClient(t, l, lrWarmupConns)
	baseFDs, baseG := lrSettled(t, l, pid, -1, -1)
	t.Logf("baseline after %d connections: %d fds, %d goroutines", lrWarmupConns, baseFDs, baseG)

	n := lrConns
	if s := os.Getenv("SPOKI_LR_CONNS"); s != "" {
		// A shorter run while working on the test itself.
		n, _ = strconv.Atoi(s)
	}
	start := time.Now()
	lrRunClient(t, l, n)
	t.Logf("%d connections in %v", n, time.Since(start).Round(time.Millisecond))

	fds, g := lrSettled(t, l, pid, baseFDs+lrFDMargin, baseG+lrGoroutineMargin)
	t.Logf("after %d connections: %d fds (baseline %d), %d goroutines (baseline %d)", n, fds, baseFDs, g, baseG)
	if fds > baseFDs+lrFDMargin {
		t.Errorf("open fds = %d after %d connections, want at most %d (baseline %d + %d)", fds, n, baseFDs+lrFDMargin, baseFDs, lrFDMargin)
	}
	if g > baseG+lrGoroutineMargin {
		t.Errorf("goroutines = %d after %d connections, want at most %d (baseline %d + %d)\n%s",
			g, n, baseG+lrGoroutineMargin, baseG, lrGoroutineMargin, lrGoroutineDump(t, l))
	}

	out := tel.stop(t)
	stats := e2eStats(t, out, "final")
	if hs := e2eStatsValue(t, stats, "handshakes"); hs < uint64(n) {
		t.Errorf("handshakes = %d, want at least %d", hs, n)
	}
	if d := e2eStatsValue(t, stats, "records_dropped"); d != 0 {
		t.Errorf("records_dropped = %d, want 0", d)
	}
}

// lrRunClient runs the test binary as the client in the scanner namespace
// for n connections, and fails the test unless nearly all succeeded.
func lrRunClient(t *testing.T, l *lab.Lab, n int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	conc := lrConcurrency
	if s := os.Getenv("SPOKI_LR_CONCURRENCY"); s != "" {
		conc, _ = strconv.Atoi(s)
	}
	out, _, code := e2eExec(t, l, l.Scanner, lrClientBudget+e2eClientTimeout, nil, "env",
		fmt.Sprintf("%s=%d %d", lrClientEnv, n, conc), exe, "-test.run=^TestLongRunClient$", "-test.v")
	var ok, failed int
	for _, line := range strings.Split(out, "\n") {
		if rest, found := strings.CutPrefix(strings.TrimSpace(line), "lr-client "); found {
			fmt.Sscanf(rest, "ok=%d failed=%d", &ok, &failed)
		}
	}
	if code != 0 {
		t.Fatalf("client exit %d (ok=%d failed=%d)", code, ok, failed)
	}
	// A connection may fail now and then (a SYN lost on a busy box); a
	// handful in a hundred thousand is no leak.
	if ok < n-n/100 {
		t.Fatalf("client: %d of %d connections completed (%d failed), want at least 99%%", ok, n, failed)
	}
}

// lrSettled waits until the telescope's fds and goroutines are at most
// maxFDs and maxG (or, with -1, stop falling), and returns them.
func lrSettled(t *testing.T, l *lab.Lab, pid, maxFDs, maxG int) (fds, g int) {
	t.Helper()
	deadline := time.Now().Add(lrSettleTimeout)
	prevFDs, prevG := -1, -1
	for {
		fds, g = lrFDs(t, pid), lrGoroutines(t, l)
		switch {
		case maxFDs < 0 && fds == prevFDs && g <= prevG:
			return fds, g
		case maxFDs >= 0 && fds <= maxFDs && g <= maxG:
			return fds, g
		case time.Now().After(deadline):
			return fds, g
		}
		prevFDs, prevG = fds, g
		time.Sleep(time.Second)
	}
}

// lrFDs counts the open file descriptors of process pid.
func lrFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatalf("count fds of %d: %v", pid, err)
	}
	return len(entries)
}

// lrGoroutines reads the telescope's goroutine count from the first line of
// its pprof goroutine profile ("goroutine profile: total N").
func lrGoroutines(t *testing.T, l *lab.Lab) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Command(ctx, l.Telescope, "curl", "-sS", "--max-time", "5",
		"http://"+lrPprofAddr+"/debug/pprof/goroutine?debug=1").Output()
	if err != nil {
		t.Fatalf("pprof goroutines: %v", err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	var n int
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("pprof goroutines: first line %q: %v", first, err)
	}
	return n
}

// lrGoroutineDump returns the telescope's goroutines grouped by stack, for
// a failure message.
func lrGoroutineDump(t *testing.T, l *lab.Lab) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := l.Command(ctx, l.Telescope, "curl", "-sS", "--max-time", "5",
		"http://"+lrPprofAddr+"/debug/pprof/goroutine?debug=1").Output()
	return e2eTruncate(string(out), 8000)
}

// TestLongRunClient is the connection client of TestLongRunStaysFlat when
// the test binary runs with SPOKI_LR_CLIENT="COUNT CONCURRENCY" (in the
// scanner namespace); otherwise it does nothing. Each connection goes to a
// random address of the IPv4 prefix on port 80, sends an HTTP request and
// reads until the telescope closes or resets it. It prints
// "lr-client ok=N failed=M".
func TestLongRunClient(t *testing.T) {
	spec := os.Getenv(lrClientEnv)
	if spec == "" {
		return
	}
	var n, conc int
	if _, err := fmt.Sscanf(spec, "%d %d", &n, &conc); err != nil {
		t.Fatalf("%s=%q: %v", lrClientEnv, spec, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lrClientBudget)
	defer cancel()
	var next, ok, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := lrOneConn(ctx); err != nil {
					failed.Add(1)
					firstErr.Do(func() { fmt.Fprintln(os.Stderr, "first failure:", err) })
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Printf("lr-client ok=%d failed=%d\n", ok.Load(), failed.Load())
	if ctx.Err() != nil {
		t.Errorf("budget of %v spent after %d connections", lrClientBudget, ok.Load()+failed.Load())
	}
}

// lrRequest is what each client connection sends.
const lrRequest = "GET / HTTP/1.0\r\nHost: longrun\r\n\r\n"

// lrOneConn makes one connection and reads until it ends. The client
// resets (linger 0) rather than closing, so that the scanner namespace does
// not run out of ports to TIME_WAIT.
func lrOneConn(ctx context.Context) error {
	a := lab.Prefix4.Addr().As4() // a /24: any host byte but 0 and 255
	a[3] = byte(1 + rand.IntN(254))
	addr := netip.AddrPortFrom(netip.AddrFrom4(a), 80)
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	defer func() {
		tc.SetLinger(0)
		tc.Close()
	}()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, lrRequest); err != nil {
		return err
	}
	br := bufio.NewReader(tc)
	status, err := br.ReadString('\n')
	if err != nil && !lrEnded(err) {
		return err
	}
	if !strings.HasPrefix(status, "HTTP/") {
		return fmt.Errorf("%s: reply %q, want an HTTP status line", addr, status)
	}
	if _, err := io.Copy(io.Discard, br); err != nil && !lrEnded(err) {
		return err
	}
	return nil
}

// lrEnded reports whether err is the telescope ending the connection: a
// reset is how it says goodbye to a scanner.
func lrEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on
// deploy/spoki.service. verify insists that ExecStart's binary exists, so
// the unit is checked as a copy whose ExecStart names the built binary; the
// original must name /usr/local/bin/spoki, where its comment installs it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		labUnavailable(t, "systemd-analyze not installed (Debian package systemd)")
	}
	bin := labSpokiBin(t)
	unit, err := os.ReadFile(filepath.Join("..", "deploy", "spoki.service"))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/spoki"
	var execStart string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	if !strings.HasPrefix(execStart, installed+" run ") {
		t.Errorf("ExecStart=%s, want %s run ...", execStart, installed)
	}
	for _, want := range []string{
		// Set-up only: spoki drops them all once the TUN, its routes and
		// the raw reply sockets are up (TestRunUnprivilegedStart starts it
		// the same way).
		"AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_SETPCAP\n", "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SETPCAP\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ReadWritePaths=/var/lib/spoki\n",
		"PrivateTmp=yes\n", "ProtectHome=yes\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	copyPath := filepath.Join(t.TempDir(), "spoki.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), installed, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify spoki.service: %v, want success and no warnings:\n%s", err, out)
	}
}
