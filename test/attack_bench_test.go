//go:build linux

package test

// BenchmarkAttackMix runs spoki, with default flags, under what a telescope
// really receives, all at once, and prints what it cost and whom it still
// served:
//
//   - a spoofed flood of irregular SYNs (no options, TTL 255, IP ID 54321,
//     as ZMap sends them) from random sources of lab.FloodSrc4 to random
//     addresses and ports of the prefix, whose SYN-ACKs go to the sink;
//   - a full connect sweep of one address (ports 1-65535, each connection
//     completed and reset at once) from the scanner's own address;
//   - slowloris holders on port 80 from a third address;
//   - a two-phase "needle" in the middle of the flood: an irregular SYN
//     from a fourth address, then a real HTTP connection from it to the
//     same address and port a few seconds later;
//   - a second host (a fifth address) that fetches a page with curl while
//     all of that goes on.
//
// It prints RSS before, at its peak and after, the live heap, spoki's
// drops by cause and every two-phase field of its final stats line,
// whether the needle's two_phase event was written and whether the second
// host was served, each target with PASS or FAIL. The memory targets are
// figures, not assertions: the benchmark fails only when it cannot run.
//
//	make build && SPOKI_BIN=$PWD/bin/spoki go test -run '^$' -bench AttackMix -benchtime 1x -v ./test
//
// Knobs (environment): SPOKI_BENCH_ATTACK_PPS (flood rate, default 50000),
// SPOKI_BENCH_HOLDERS (slowloris connections, default 5000),
// SPOKI_BENCH_ARGS (extra flags of spoki run), SPOKI_BENCH_PROFILES (a
// directory: heap profiles before the mix, in its middle (with the
// goroutines) and after its settle are written there, for go tool pprof
// -base), and spoki's output as spoki.log.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// Attack mix settings: every part is bounded in count and time.
const (
	attackFloodDuration = 20 * time.Second
	attackDefaultPPS    = 50000
	attackDefaultHolder = 5000
	attackHolderEvery   = time.Second // under the HTTP handler's 2 s per-read timeout
	attackSweepWorkers  = 32
	attackSweepBudget   = 45 * time.Second // the sweep stops here, done or not
	attackNeedleAt      = 5 * time.Second  // phase one, from the flood's start
	attackNeedleGap     = 4 * time.Second  // phase two after phase one
	attackSecondAt      = 8 * time.Second
	attackCurlMaxTime   = 25 // seconds
	attackSettle        = 15 * time.Second
	attackProfileAt     = 15 * time.Second // the mid-mix profile, from the flood's start
	attackTotal         = 110 * time.Second

	attackTargetRSSPeak = 64 * benchMiB
	attackTargetGrowth  = 16 * benchMiB
)

// Targets of the mix, by address.
var (
	attackSweepTarget  = netip.MustParseAddr("198.51.100.7")
	attackHolderTarget = netip.MustParseAddrPort("198.51.100.80:80")
	attackNeedleTarget = netip.MustParseAddrPort("198.51.100.99:8080")
	attackSecondTarget = netip.MustParseAddrPort("198.51.100.81:80")
)

func BenchmarkAttackMix(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("BenchmarkAttackMix needs root (network namespaces, TUN, AF_PACKET)")
	}
	bin := benchSpokiBin(b)
	pps := attackEnvInt(b, "SPOKI_BENCH_ATTACK_PPS", attackDefaultPPS)
	holders := attackEnvInt(b, "SPOKI_BENCH_HOLDERS", attackDefaultHolder)

	ctx, cancel := context.WithTimeout(context.Background(), attackTotal)
	b.Cleanup(cancel)
	l, err := lab.New(ctx, lab.Config{Sink: true})
	if err != nil {
		b.Fatalf("lab: %v", err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Errorf("lab close: %v", err)
		}
		if names := benchLeftoverNamespaces(l.Name); len(names) > 0 {
			b.Errorf("namespaces left after Close: %v", names)
		}
	})
	for _, a := range []netip.Addr{slowlorisAddr4, needleAddr4, secondHostAddr4} {
		if err := labAddScannerAddr(ctx, l, a); err != nil {
			b.Fatal(err)
		}
	}
	logDir, err := os.MkdirTemp("", "spoki-attack-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(logDir) })

	b.ResetTimer()
	args := []string{"run", "--prefix", lab.Prefix4.String(), "--tun", l.TUN, "--log-dir", logDir,
		"--tag", e2eTag, "--stats-interval", "1s", "--pprof", benchPprofAddr}
	args = append(args, strings.Fields(os.Getenv("SPOKI_BENCH_ARGS"))...)
	p, err := l.Start(l.Telescope, bin, args...)
	if err != nil {
		b.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.Stop()
		}
	}()
	if err := p.WaitForLine(lab.IsReadyLine, "ready", benchReadyTimeout); err != nil {
		b.Fatal(err)
	}
	pid := p.Pid()
	tGC := time.Now()
	profDir := os.Getenv("SPOKI_BENCH_PROFILES")
	// The forced collection of heap?gc=1 is the baseline's, profiles or
	// not; the text form (its MemStats) only with profiles.
	if err := benchFetchPprof(ctx, l, "heap?gc=1", attackProfilePath(profDir, "heap-before.pb.gz")); err != nil {
		b.Fatal(err)
	}
	if err := attackFetchProfiles(ctx, l, profDir, [2]string{"heap?debug=1", "heap-before.txt"}); err != nil {
		b.Fatalf("heap profile before the mix: %v", err)
	}
	if err := benchWaitStatsAfter(p, tGC); err != nil {
		b.Fatal(err)
	}
	rssBefore, err := benchVmRSS(pid)
	if err != nil {
		b.Fatal(err)
	}

	anonBefore, _ := benchProcStatus(pid, "RssAnon")
	fileBefore, _ := benchProcStatus(pid, "RssFile")

	// RSS sampler over the whole mix.
	var rssPeak, anonPeak atomic.Uint64
	rssPeak.Store(rssBefore)
	anonPeak.Store(anonBefore)
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(benchSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if v, err := benchVmRSS(pid); err == nil && v > rssPeak.Load() {
					rssPeak.Store(v)
				}
				if v, err := benchProcStatus(pid, "RssAnon"); err == nil && v > anonPeak.Load() {
					anonPeak.Store(v)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		sampler.Wait()
	}()

	cpuBefore, _ := benchCPUTicks(pid)
	t0 := time.Now()
	flood, err := l.Start(l.Scanner, bin, "probe", "flood", "--iface", l.ScannerIface,
		"--prefix", lab.Prefix4.String(), "--src", lab.FloodSrc4.String(), "--kind", "syn", "--irregular",
		"--duration", attackFloodDuration.String(), "--rate", strconv.Itoa(pps))
	if err != nil {
		b.Fatal(err)
	}

	slow, err := startSlowloris(l.Scanner, slowlorisAddr4, attackHolderTarget, holders, attackHolderEvery, attackFloodDuration+20*time.Second)
	if err != nil {
		b.Fatalf("slowloris: %v", err)
	}
	defer slow.close()
	tHolders := time.Since(t0)

	var wg sync.WaitGroup
	var sweep attackSweepResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		sweep = attackSweep(l.Scanner, lab.ScannerAddr4, attackSweepTarget, attackSweepBudget)
	}()

	var needleCurl, secondCurl attackCurlResult
	var needleSYNErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		time.Sleep(time.Until(t0.Add(attackNeedleAt)))
		needleSYNErr = attackNeedleSYN(ctx, l)
		time.Sleep(attackNeedleGap)
		needleCurl = attackCurl(ctx, l, needleAddr4, attackNeedleTarget)
	}()
	go func() {
		defer wg.Done()
		time.Sleep(time.Until(t0.Add(attackSecondAt)))
		secondCurl = attackCurl(ctx, l, secondHostAddr4, attackSecondTarget)
	}()

	// A profile in the middle of the mix, where the heap peaks: the sweep,
	// the holders and the flood all at once. Without a forced collection:
	// the profile is the live heap of the last cycle, and the MemStats at
	// the end of the text form show the heap the peak RSS is made of.
	var mid sync.WaitGroup
	if profDir != "" {
		mid.Add(1)
		go func() {
			defer mid.Done()
			time.Sleep(time.Until(t0.Add(attackProfileAt)))
			if err := attackFetchProfiles(ctx, l, profDir, [2]string{"heap", "heap-mid.pb.gz"},
				[2]string{"heap?debug=1", "heap-mid.txt"}, [2]string{"goroutine?debug=1", "goroutine-mid.txt"}); err != nil {
				b.Errorf("profile in the mix: %v", err)
			}
		}()
	}

	select {
	case <-flood.Done():
	case <-time.After(attackFloodDuration + 20*time.Second):
		b.Fatalf("flood did not stop by itself")
	}
	_ = flood.Stop()
	floodSent, floodElapsed, floodErr := benchParseFlood(flood.Output())
	wg.Wait()
	mid.Wait()
	cut := slow.cut.Load()
	slow.close()
	tLoadEnd := time.Since(t0)
	cpuLoad, _ := benchCPUTicks(pid)
	time.Sleep(attackSettle)
	close(stopSampling)
	sampler.Wait()
	rssAfter, _ := benchVmRSS(pid)
	anonAfter, _ := benchProcStatus(pid, "RssAnon")
	fileAfter, _ := benchProcStatus(pid, "RssFile")
	if err := attackFetchProfiles(ctx, l, profDir, [2]string{"heap?gc=1", "heap-after.pb.gz"}, [2]string{"heap?debug=1", "heap-after.txt"}); err != nil {
		b.Errorf("heap profile after the mix: %v", err)
	}

	stopped = true
	if err := p.Stop(); err != nil {
		b.Errorf("spoki run after SIGTERM: %v\n%s", err, benchTail(p.Output(), 20))
	}
	b.StopTimer()
	out := p.Output()
	if profDir != "" {
		// spoki's stats lines, one a second: the heap and RSS over the mix.
		if err := os.WriteFile(filepath.Join(profDir, "spoki.log"), []byte(out), 0o644); err != nil {
			b.Errorf("spoki's output: %v", err)
		}
	}

	// Heap from the stats lines: before is the last line before the mix.
	var heapBefore, heapPeak, heapAfter uint64
	for _, s := range benchParseStats(out) {
		if !s.hasHeap {
			continue
		}
		switch {
		case s.msg == "final":
			heapAfter = s.heapLive
		case s.at.Before(t0):
			heapBefore = s.heapLive
		default:
			heapPeak = max(heapPeak, s.heapLive)
		}
	}
	final := attackLastLine(out, "final")

	events, err := lab.ReadEvents(logDir, e2eTag)
	if err != nil {
		b.Errorf("read events: %v", err)
	}
	needle, second := false, false
	for _, e := range events {
		if e.EventType == "two_phase" && e.SrcIP == needleAddr4 && e.Dest() == attackNeedleTarget {
			needle = true
		}
		if e.EventType == "session" && e.SrcIP == secondHostAddr4 && e.Dest() == attackSecondTarget && e.AppProto == "http" {
			second = true
		}
	}
	second = second && secondCurl.ok()

	benchPrintf(b, "\nattack mix (default flags%s; shared 2-core machine, other jobs running: figures vary):\n", attackArgsNote())
	if floodErr != nil {
		benchPrintf(b, "  irregular SYN flood: %v\n", floodErr)
	} else {
		benchPrintf(b, "  irregular SYN flood: %d SYNs in %.1fs (%.0f/s offered %d/s) from %s\n",
			floodSent, floodElapsed.Seconds(), float64(floodSent)/floodElapsed.Seconds(), pps, lab.FloodSrc4)
	}
	benchPrintf(b, "  connect sweep of %s from %s: %d of 65535 ports connected, %d failed, in %.1fs%s\n",
		attackSweepTarget, lab.ScannerAddr4, sweep.connected, sweep.failed, sweep.elapsed.Seconds(), sweep.note())
	benchPrintf(b, "  slowloris from %s to %s: %d of %d connections opened (%.1fs), %d cut by spoki during the mix\n",
		slowlorisAddr4, attackHolderTarget, slow.opened(), holders, tHolders.Seconds(), cut)
	benchPrintf(b, "  needle from %s to %s: irregular SYN %s, curl %s\n", needleAddr4, attackNeedleTarget,
		attackErrNote(needleSYNErr), needleCurl)
	benchPrintf(b, "  second host %s to %s: curl %s\n", secondHostAddr4, attackSecondTarget, secondCurl)
	benchPrintf(b, "  load ran %.1fs; after it, %v settle\n", tLoadEnd.Seconds(), attackSettle)
	cpu := time.Duration(cpuLoad-cpuBefore) * benchClockTick
	benchPrintf(b, "  spoki CPU during the load: %.1fs (%.2f cores)%s\n", cpu.Seconds(), cpu.Seconds()/tLoadEnd.Seconds(), attackGCNote(profDir))
	benchPrintf(b, "  RSS MiB: before %.1f, peak %.1f, after %.1f (growth %+.1f)\n",
		benchMiBf(rssBefore), benchMiBf(rssPeak.Load()), benchMiBf(rssAfter), benchMiBf(rssAfter)-benchMiBf(rssBefore))
	benchPrintf(b, "    of which anonymous (spoki's own memory, the two-phase table included): before %.1f, peak %.1f, after %.1f (growth %+.1f)\n",
		benchMiBf(anonBefore), benchMiBf(anonPeak.Load()), benchMiBf(anonAfter), benchMiBf(anonAfter)-benchMiBf(anonBefore))
	benchPrintf(b, "    of which file pages (the binary's code, shared and clean): before %.1f, after %.1f\n",
		benchMiBf(fileBefore), benchMiBf(fileAfter))
	benchPrintf(b, "  heap_live MiB: before %.1f, peak %.1f, final %.1f\n", benchMiBf(heapBefore), benchMiBf(heapPeak), benchMiBf(heapAfter))
	benchPrintf(b, "  drops by cause (final stats line): %s\n", attackFields(final, func(k string) bool {
		return strings.HasPrefix(k, "drop") || strings.HasSuffix(k, "_dropped") || strings.HasPrefix(k, "budget_")
	}))
	benchPrintf(b, "  two-phase fields (final stats line): %s\n", attackFields(final, func(k string) bool {
		return strings.Contains(k, "phase") || strings.Contains(k, "window") || strings.Contains(k, "evict")
	}))
	benchPrintf(b, "  final stats line: %s\n", attackFields(final, func(k string) bool {
		return k != "time" && k != "level" && k != "msg"
	}))
	benchPrintf(b, "  targets:\n")
	benchPrintf(b, "    %s RSS peak %.1f MiB < %d MiB\n", attackPass(rssPeak.Load() < attackTargetRSSPeak), benchMiBf(rssPeak.Load()), attackTargetRSSPeak/benchMiB)
	benchPrintf(b, "    %s RSS growth %.1f MiB < %d MiB\n", attackPass(rssAfter < rssBefore+attackTargetGrowth), benchMiBf(benchSub(rssAfter, rssBefore)), attackTargetGrowth/benchMiB)
	benchPrintf(b, "    %s needle's two_phase event written\n", attackPass(needle))
	benchPrintf(b, "    %s second host served (curl answered, http session recorded)\n", attackPass(second))
	b.ReportMetric(benchMiBf(rssPeak.Load()), "rss-peak-MiB")
	b.ReportMetric(benchMiBf(benchSub(rssAfter, rssBefore)), "rss-growth-MiB")
}

// attackSweepResult is what the connect sweep achieved.
type attackSweepResult struct {
	connected, failed int
	elapsed           time.Duration
	unfinished        int // ports not tried when the budget ran out
}

func (r attackSweepResult) note() string {
	if r.unfinished > 0 {
		return fmt.Sprintf(" (stopped at its %v budget, %d ports not tried)", attackSweepBudget, r.unfinished)
	}
	return ""
}

// attackSweep connects to every port of dst from src, as nmap -sT does:
// a full handshake, then a reset. attackSweepWorkers goroutines, each on a
// thread in namespace ns, share the ports; the sweep stops at budget.
func attackSweep(ns string, src, dst netip.Addr, budget time.Duration) attackSweepResult {
	start := time.Now()
	deadline := start.Add(budget)
	var next atomic.Int64
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range attackSweepWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 2 * time.Second}
			_ = lab.InNetns(ns, func() error {
				for time.Now().Before(deadline) {
					port := next.Add(1)
					if port > 65535 {
						return nil
					}
					c, err := d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
					if err != nil {
						bad.Add(1)
						continue
					}
					_ = c.(*net.TCPConn).SetLinger(0)
					_ = c.Close()
					ok.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	r := attackSweepResult{connected: int(ok.Load()), failed: int(bad.Load()), elapsed: time.Since(start)}
	if n := next.Load(); n < 65535 {
		r.unfinished = int(65535 - n)
	}
	return r
}

// attackNeedleSYN sends phase one of the needle: one irregular SYN (hping3
// sends no options) from needleAddr4.
func attackNeedleSYN(ctx context.Context, l *lab.Lab) error {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := l.Command(c, l.Scanner, "hping3", "-S", "-c", "1", "-a", needleAddr4.String(), "-s", "41999",
		"-p", strconv.Itoa(int(attackNeedleTarget.Port())), attackNeedleTarget.Addr().String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hping3: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// attackCurlResult is one curl's outcome.
type attackCurlResult struct {
	code    int    // curl's exit code, -1 if it did not run
	status  string // HTTP status, "000" if none
	elapsed time.Duration
}

func (r attackCurlResult) ok() bool { return r.code == 0 && r.status != "000" && r.status != "" }

func (r attackCurlResult) String() string {
	return fmt.Sprintf("exit %d, HTTP %s, %.1fs", r.code, r.status, r.elapsed.Seconds())
}

// attackCurl fetches http://dst/ from src in the scanner namespace.
func attackCurl(ctx context.Context, l *lab.Lab, src netip.Addr, dst netip.AddrPort) attackCurlResult {
	c, cancel := context.WithTimeout(ctx, time.Duration(attackCurlMaxTime+5)*time.Second)
	defer cancel()
	start := time.Now()
	out, err := l.Command(c, l.Scanner, "curl", "-sS", "--noproxy", "*", "--interface", src.String(),
		"--max-time", strconv.Itoa(attackCurlMaxTime), "-o", "/dev/null", "-w", "%{http_code}",
		"http://"+dst.String()+"/").Output()
	r := attackCurlResult{status: strings.TrimSpace(string(out)), elapsed: time.Since(start)}
	if ee, ok := err.(interface{ ExitCode() int }); ok && err != nil {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
	}
	return r
}

// attackLastLine returns the key=value fields of spoki's last log line with
// msg, in slog's text format.
func attackLastLine(out, msg string) map[string]string {
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "msg="+msg+" ") {
			line = l
		}
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	return fields
}

// attackFields formats the fields whose keys match, sorted by key.
func attackFields(fields map[string]string, match func(string) bool) string {
	var keys []string
	for k := range fields {
		if match(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "(none in this build)"
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+fields[k])
	}
	return strings.Join(parts, " ")
}

func attackPass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func attackErrNote(err error) string {
	if err != nil {
		return err.Error()
	}
	return "sent"
}

// attackArgsNote names the extra flags, if any.
func attackArgsNote() string {
	if a := strings.Fields(os.Getenv("SPOKI_BENCH_ARGS")); len(a) > 0 {
		return " plus " + strings.Join(a, " ")
	}
	return ""
}

// attackEnvInt reads a positive integer knob.
func attackEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// attackFetchProfiles fetches each {pprof path, file name} of fetches into
// dir, the SPOKI_BENCH_PROFILES directory; nothing when dir is empty. A
// text form (debug=1) of a heap profile ends with runtime.MemStats: where
// the anonymous memory that is not live heap sits (free spans, stacks,
// metadata).
func attackFetchProfiles(ctx context.Context, l *lab.Lab, dir string, fetches ...[2]string) error {
	if dir == "" {
		return nil
	}
	for _, f := range fetches {
		if err := benchFetchPprof(ctx, l, f[0], filepath.Join(dir, f[1])); err != nil {
			return err
		}
	}
	return nil
}

// attackProfilePath is where a heap profile of the mix goes: nowhere
// unless the SPOKI_BENCH_PROFILES directory is set.
func attackProfilePath(dir, name string) string {
	if dir == "" {
		return os.DevNull
	}
	return filepath.Join(dir, name)
}

// attackGCNote gives the collections between the profiles before the mix
// and after its settle (from their MemStats), if they were written.
func attackGCNote(dir string) string {
	if dir == "" {
		return ""
	}
	n := func(name string) (uint64, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return 0, false
		}
		_, v, ok := strings.Cut(string(b), "\n# NumGC = ")
		if !ok {
			return 0, false
		}
		v, _, _ = strings.Cut(v, "\n")
		u, err := strconv.ParseUint(v, 10, 64)
		return u, err == nil
	}
	before, ok1 := n("heap-before.txt")
	after, ok2 := n("heap-after.txt")
	if !ok1 || !ok2 {
		return ""
	}
	return fmt.Sprintf(", %d collections (profiles' forced ones included)", after-before)
}
