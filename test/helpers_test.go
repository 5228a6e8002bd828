package test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/stats"
	"github.com/spoki-telescope/spoki/telescope"
)

// Timeouts of the end-to-end tests.
const (
	// e2eSetupTimeout bounds building a lab.
	e2eSetupTimeout = 30 * time.Second
	// e2eReadyTimeout bounds the wait for spoki's ready line.
	e2eReadyTimeout = 15 * time.Second
	// e2eClientTimeout bounds one client command in the scanner namespace.
	e2eClientTimeout = 20 * time.Second
	// e2eTag is the --tag of every telescope the tests start.
	e2eTag = "lab"
)

// labInCI reports whether the tests run under CI=true, where a missing
// capability or tool fails instead of skipping.
func labInCI() bool { return os.Getenv("CI") == "true" }

// labUnavailable skips the test with reason, or fails it under CI=true.
func labUnavailable(t *testing.T, reason string) {
	t.Helper()
	if labInCI() {
		t.Fatalf("%s (CI=true: failing instead of skipping)", reason)
	}
	t.Skip(reason)
}

// labRequireRoot skips (or fails under CI=true) a test that needs root:
// network namespaces, TUN devices and raw sockets need CAP_NET_ADMIN,
// CAP_SYS_ADMIN and CAP_NET_RAW.
func labRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		labUnavailable(t, "end-to-end lab tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_RAW)")
	}
}

// labRequireTools skips (or fails under CI=true) a test whose tools are not
// installed (.ci/run installs them).
func labRequireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			labUnavailable(t, fmt.Sprintf("tool %s not installed: %v", tool, err))
		}
	}
}

// labSpokiBin returns the spoki binary of SPOKI_BIN (make exports it), or
// skips (fails under CI=true) without one.
func labSpokiBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SPOKI_BIN")
	if bin == "" {
		labUnavailable(t, "SPOKI_BIN is not set: build with `make build` and run through make, or export SPOKI_BIN=bin/spoki")
	}
	if _, err := os.Stat(bin); err != nil {
		labUnavailable(t, fmt.Sprintf("SPOKI_BIN=%s: %v", bin, err))
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("SPOKI_BIN=%s: %v", bin, err)
	}
	return abs
}

// e2eLogWriter passes the output of the lab's processes to t.Log, one line
// per call, until the test is over; later writes (a straggler's last line)
// are dropped, because t.Log after the end of a test panics.
type e2eLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

// Write implements io.Writer.
func (w *e2eLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// e2eNewLab checks for root, the binary and the tools, builds a lab and
// registers its removal (processes stopped by PID, namespaces deleted) for
// the end of the test, pass or fail.
func e2eNewLab(t *testing.T, cfg lab.Config, tools ...string) *lab.Lab {
	t.Helper()
	labRequireRoot(t)
	labRequireTools(t, tools...)
	w := &e2eLogWriter{t: t}
	// Registered first, so it runs last: after Close has stopped the
	// processes whose output it logs.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	cfg.Output = w
	ctx, cancel := context.WithTimeout(context.Background(), e2eSetupTimeout)
	defer cancel()
	l, err := lab.New(ctx, cfg)
	if err != nil {
		t.Fatalf("lab.New: %v", err)
	}
	t.Cleanup(func() {
		nss := l.Namespaces()
		if err := l.Close(); err != nil {
			t.Errorf("lab.Close: %v", err)
		}
		for _, ns := range nss {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
				t.Errorf("namespace %s still exists after lab.Close", ns)
			}
		}
	})
	return l
}

// e2eTelescope is a `spoki run` started in a lab's telescope namespace.
type e2eTelescope struct {
	lab    *lab.Lab
	proc   *lab.Process
	logDir string
}

// e2eRunArgs returns the arguments of the telescope every test starts.
func e2eRunArgs(l *lab.Lab, logDir string) []string {
	return []string{"run",
		"--prefix", lab.Prefix4.String(), "--prefix", lab.Prefix6.String(),
		"--tun", l.TUN, "--log-dir", logDir, "--tag", e2eTag, "--stats-interval", "0"}
}

// e2eStartTelescope starts `spoki run` in l's telescope namespace with the
// tests' standard flags plus extra, and waits for its ready line. The lab's
// Close stops it if the test does not.
func e2eStartTelescope(t *testing.T, l *lab.Lab, extra ...string) *e2eTelescope {
	t.Helper()
	bin := labSpokiBin(t)
	tel := &e2eTelescope{lab: l, logDir: t.TempDir()}
	p, err := l.Start(l.Telescope, bin, append(e2eRunArgs(l, tel.logDir), extra...)...)
	if err != nil {
		t.Fatalf("start spoki: %v", err)
	}
	tel.proc = p
	// Registered after t.TempDir, so it runs before the log directory is
	// removed: a test that failed early must not leave spoki writing into
	// a directory being deleted. Stop by PID; later calls are no-ops.
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.WaitForLine(lab.IsReadyLine, "ready", e2eReadyTimeout); err != nil {
		t.Fatalf("spoki not ready: %v", err)
	}
	return tel
}

// checkReplies asserts that the ready line says the front end's replies
// leave as want ("raw": sendmmsg batches on raw IP sockets, spoki's
// default; "tun": written to the TUN, --tun-replies).
func (tel *e2eTelescope) checkReplies(t *testing.T, want string) {
	t.Helper()
	for _, line := range strings.Split(tel.proc.Output(), "\n") {
		if lab.IsReadyLine(line) {
			if !strings.Contains(line, " replies="+want) {
				t.Errorf("ready line %q: want replies=%s", line, want)
			}
			return
		}
	}
	t.Errorf("no ready line in spoki's output")
}

// checkProcs asserts that the ready line gives the Ps spoki runs with:
// Go's default (this test's own, in the same cgroup) plus
// telescope.ExtraProcs, or the environment's GOMAXPROCS when set.
func (tel *e2eTelescope) checkProcs(t *testing.T) {
	t.Helper()
	want := fmt.Sprintf(" procs=%d procs_source=default+%d", runtime.GOMAXPROCS(0)+telescope.ExtraProcs, telescope.ExtraProcs)
	if env := os.Getenv("GOMAXPROCS"); env != "" {
		want = " procs_source=GOMAXPROCS=" + env
	}
	for _, line := range strings.Split(tel.proc.Output(), "\n") {
		if lab.IsReadyLine(line) {
			if !strings.Contains(line, want) {
				t.Errorf("ready line %q: want %q", line, want)
			}
			return
		}
	}
	t.Errorf("no ready line in spoki's output")
}

// stop sends SIGTERM, asserts exit status 0 and returns spoki's output.
func (tel *e2eTelescope) stop(t *testing.T) string {
	t.Helper()
	if err := tel.proc.Stop(); err != nil {
		t.Errorf("spoki run after SIGTERM: %v, want exit status 0", err)
	}
	return tel.proc.Output()
}

// e2eExec runs name with args in namespace ns, bounded by timeout, and
// returns its standard output, standard error and exit code (-1 when it did
// not exit by itself).
func e2eExec(t *testing.T, l *lab.Lab, ns string, timeout time.Duration, stdin []byte, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := l.Command(ctx, ns, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	code = 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	default:
		code = -1
	}
	if ctx.Err() != nil {
		code = -1
	}
	t.Logf("[%s] %s %s: exit %d\nstdout:\n%s\nstderr:\n%s", ns, name, strings.Join(args, " "), code,
		e2eTruncate(o.String(), 4000), e2eTruncate(e.String(), 4000))
	return o.String(), e.String(), code
}

// e2eTruncate cuts s to n bytes for a log line.
func e2eTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes more)", len(s)-n)
}

// e2eSYNResult is one line of `spoki probe syn`'s output.
type e2eSYNResult struct {
	target  netip.AddrPort
	synacks int
	ackOK   bool
	sport   uint16
}

// e2eProbeSYN runs `spoki probe syn --target ...` in the scanner namespace
// and returns its per-target results and exit code.
func e2eProbeSYN(t *testing.T, l *lab.Lab, targets []netip.AddrPort, wait time.Duration) ([]e2eSYNResult, int) {
	t.Helper()
	args := []string{"probe", "syn", "--wait", wait.String()}
	for _, tg := range targets {
		args = append(args, "--target", tg.String())
	}
	out, _, code := e2eExec(t, l, l.Scanner, wait+e2eClientTimeout, nil, labSpokiBin(t), args...)
	var res []e2eSYNResult
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		ap, err := netip.ParseAddrPort(f[0])
		if err != nil {
			continue
		}
		r := e2eSYNResult{target: ap}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "synacks":
				r.synacks, _ = strconv.Atoi(v)
			case "ack_ok":
				r.ackOK = v == "true"
			case "sport":
				n, _ := strconv.ParseUint(v, 10, 16)
				r.sport = uint16(n)
			}
		}
		res = append(res, r)
	}
	return res, code
}

// e2eSegment is one TCP segment printed by tcpdump -n -S.
type e2eSegment struct {
	src, dst netip.AddrPort
	flags    string // tcpdump's letters: S, S., R., P., F., ...
	seq      uint32
	ack      uint32
	hasAck   bool
}

// e2eTcpdumpLine matches tcpdump's one-line TCP summary, IPv4 or IPv6:
// "12:00:00.000000 IP 198.51.100.7.80 > 192.0.2.2.40000: Flags [S.], seq 1, ack 2, ...".
var e2eTcpdumpLine = regexp.MustCompile(`\bIP6? (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\](?:, seq (\d+)(?::\d+)?)?(?:, ack (\d+))?`)

// e2eParseSegment parses one tcpdump line; ok is false for other lines.
func e2eParseSegment(line string) (e2eSegment, bool) {
	m := e2eTcpdumpLine.FindStringSubmatch(line)
	if m == nil {
		return e2eSegment{}, false
	}
	ap := func(a, p string) (netip.AddrPort, bool) {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return netip.AddrPort{}, false
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(addr, uint16(port)), true
	}
	src, ok1 := ap(m[1], m[2])
	dst, ok2 := ap(m[3], m[4])
	if !ok1 || !ok2 {
		return e2eSegment{}, false
	}
	s := e2eSegment{src: src, dst: dst, flags: m[5]}
	if m[6] != "" {
		n, _ := strconv.ParseUint(m[6], 10, 32)
		s.seq = uint32(n)
	}
	if m[7] != "" {
		n, _ := strconv.ParseUint(m[7], 10, 32)
		s.ack, s.hasAck = uint32(n), true
	}
	return s, true
}

// e2eCapture is a tcpdump running in a lab namespace.
type e2eCapture struct {
	proc *lab.Process
}

// e2eStartCapture starts tcpdump on iface in namespace ns with the filter
// and waits until it captures. Lines are printed as packets arrive (-l),
// with absolute sequence numbers (-S).
func e2eStartCapture(t *testing.T, l *lab.Lab, ns, iface, filter string) *e2eCapture {
	t.Helper()
	p, err := l.Start(ns, "tcpdump", "-n", "-S", "-l", "-i", iface, filter)
	if err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	if err := p.WaitFor("listening on", 10*time.Second); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	return &e2eCapture{proc: p}
}

// stop ends the capture (SIGTERM: tcpdump prints what it has and its
// counts) and returns every packet line and the parsed TCP segments. It
// fails the test if the kernel dropped packets before tcpdump saw them.
func (c *e2eCapture) stop(t *testing.T) (lines []string, segs []e2eSegment) {
	t.Helper()
	// Let the last packets through the capture buffer first.
	time.Sleep(200 * time.Millisecond)
	_ = c.proc.Stop() // tcpdump's status on SIGTERM is not the test's business
	for _, line := range strings.Split(c.proc.Output(), "\n") {
		if strings.Contains(line, "dropped by kernel") && !strings.HasPrefix(line, "0 ") {
			t.Errorf("tcpdump: %s: the capture is incomplete", line)
		}
		if strings.Contains(line, " > ") && (strings.Contains(line, " IP ") || strings.Contains(line, " IP6 ")) {
			lines = append(lines, line)
			if s, ok := e2eParseSegment(line); ok {
				segs = append(segs, s)
			}
		}
	}
	return lines, segs
}

// e2eLogKind is the kind of a file of spoki's log directory.
type e2eLogKind int

const (
	e2eRawTCP e2eLogKind = iota
	e2eRawUDP
	e2eRawICMP
	e2eReplies
	e2eEvents
)

// e2eLogFilePattern names the files of each kind
// (docs/formats.md#file-names-and-hours), with an optional .gz for rotated
// files.
var e2eLogFilePattern = map[e2eLogKind]*regexp.Regexp{
	e2eRawTCP:  regexp.MustCompile(`^\d{4}-\d{2}-\d{2}\.\d{2}:00:00\.` + e2eTag + `\.spoki\.tcp\.raw\.\d+\.csv(\.gz)?$`),
	e2eRawUDP:  regexp.MustCompile(`^\d{4}-\d{2}-\d{2}\.\d{2}:00:00\.` + e2eTag + `\.spoki\.udp\.raw\.\d+\.csv(\.gz)?$`),
	e2eRawICMP: regexp.MustCompile(`^\d{4}-\d{2}-\d{2}\.\d{2}:00:00\.` + e2eTag + `\.spoki\.icmp\.raw\.\d+\.csv(\.gz)?$`),
	e2eReplies: regexp.MustCompile(`^\d{4}-\d{2}-\d{2}\.\d{2}:00:00\.` + e2eTag + `\.spoki\.tcp\.scamper\.\d+\.csv(\.gz)?$`),
	e2eEvents:  regexp.MustCompile(`^` + e2eTag + `\.events\.\d{8}-\d{2}\.jsonl(\.gz)?$`),
}

// e2eLogFiles lists the log directory by kind; a file of no known kind
// fails the test.
func e2eLogFiles(t *testing.T, dir string) map[e2eLogKind][]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read log dir: %v", err)
	}
	files := map[e2eLogKind][]string{}
next:
	for _, e := range entries {
		for kind, re := range e2eLogFilePattern {
			if re.MatchString(e.Name()) {
				files[kind] = append(files[kind], filepath.Join(dir, e.Name()))
				continue next
			}
		}
		t.Errorf("unexpected file in the log directory: %s", e.Name())
	}
	return files
}

// e2eReadLines reads a log file whole (gunzipping .gz) and returns its
// lines. A non-empty file that does not end in a newline, that is one with
// a partial last line, fails the test.
func e2eReadLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("gunzip %s: %v", name, err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		i := bytes.LastIndexByte(b, '\n')
		t.Errorf("%s: partial last line %q (no trailing newline)", filepath.Base(name), b[i+1:])
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// e2eReadRows parses every row of the logs of kind with parse; each file's
// header must be header and every row must parse.
func e2eReadRows[T any](t *testing.T, dir string, kind e2eLogKind, header string, parse func(string) (T, error)) []T {
	t.Helper()
	var out []T
	for _, name := range e2eLogFiles(t, dir)[kind] {
		lines := e2eReadLines(t, name)
		if len(lines) == 0 {
			continue
		}
		if lines[0] != header {
			t.Errorf("%s: header %q, want %q", filepath.Base(name), lines[0], header)
		}
		for i, line := range lines[1:] {
			r, err := parse(line)
			if err != nil {
				t.Errorf("%s:%d: parse %q: %v", filepath.Base(name), i+2, line, err)
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

// e2eReadRawTCP parses every row of the raw TCP logs (e2eReadRows).
func e2eReadRawTCP(t *testing.T, dir string) []records.Packet {
	t.Helper()
	return e2eReadRows(t, dir, e2eRawTCP, records.RawHeader, records.ParseRawRow)
}

// e2eReadReplies parses every row of the reply logs (e2eReadRows).
func e2eReadReplies(t *testing.T, dir string) []records.Reply {
	t.Helper()
	return e2eReadRows(t, dir, e2eReplies, records.ReplyHeader, records.ParseReplyRow)
}

// e2eReadEvents reads the event log with lab.ReadEvents.
func e2eReadEvents(t *testing.T, dir string) []lab.Event {
	t.Helper()
	events, err := lab.ReadEvents(dir, e2eTag)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return events
}

// e2eStats returns the key=value counters of spoki's last log line with
// msg (e.g. "final", written at SIGTERM, with every total), in slog's text
// format; sizes (heap_live, rss) in bytes.
func e2eStats(t *testing.T, output, msg string) map[string]uint64 {
	t.Helper()
	var line string
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "msg="+msg+" ") || strings.HasSuffix(l, "msg="+msg) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no %q line in spoki's output:\n%s", msg, e2eTruncate(output, 4000))
	}
	stats := map[string]uint64{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if n, ok := e2eStatNumber(v); ok {
			stats[k] = n
		}
	}
	return stats
}

// e2eStatNumber reads a number of the stats or final line: a count, or a
// size as the lines spell it (34.8MiB, to within its rounding).
func e2eStatNumber(v string) (uint64, bool) {
	return stats.ParseSize(v)
}

// e2eStatsValue returns one counter of stats, failing the test when the
// line lacks it.
func e2eStatsValue(t *testing.T, stats map[string]uint64, key string) uint64 {
	t.Helper()
	v, ok := stats[key]
	if !ok {
		t.Fatalf("stats line has no %s: %v", key, stats)
	}
	return v
}

// e2eFlowKey identifies a TCP flow from the client's side.
type e2eFlowKey struct {
	client, server netip.AddrPort
}

// e2eRowFlow returns the flow of a raw-log row (client → telescope).
func e2eRowFlow(p records.Packet) e2eFlowKey {
	return e2eFlowKey{netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)}
}

// e2eCheckTUNGone asserts that the TUN and the routes of both prefixes are
// gone from the telescope namespace.
func e2eCheckTUNGone(t *testing.T, l *lab.Lab) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", l.Telescope, "link", "show", "dev", l.TUN).CombinedOutput(); err == nil {
		t.Errorf("TUN %s still exists after exit:\n%s", l.TUN, out)
	}
	for _, fam := range []struct {
		flag   string
		prefix netip.Prefix
	}{{"-4", lab.Prefix4}, {"-6", lab.Prefix6}} {
		out, err := exec.Command("ip", "-n", l.Telescope, fam.flag, "route", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip route: %v: %s", err, out)
		}
		if strings.Contains(string(out), fam.prefix.String()) || strings.Contains(string(out), l.TUN) {
			t.Errorf("route to %s still there after exit:\n%s", fam.prefix, out)
		}
	}
}
