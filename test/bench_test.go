//go:build linux

package test

// BenchmarkFlood measures spoki against the raw TUN echo in its two modes
// (`spoki echo`, each SYN-ACK written to the TUN, the ceiling of any
// one-packet-per-syscall TUN design; `spoki echo --raw-replies`, the
// SYN-ACKs of each read batch in one sendmmsg on raw IP sockets, the
// ceiling of spoki's own I/O) and against the Linux
// kernel's own SYN-cookie responder (bench_kernel_test.go) under the same
// bounded, spoofed SYN floods, regular and irregular (ZMap-like), as
// docs/benchmarks.md#the-set-up describes:
//
//	scanner --veth--> telescope host (prefix routed to the TUN) --veth--> sink
//
// The flood's sources are in lab.FloodSrc4, which the telescope host routes
// to the sink, so every design pays the same egress for its SYN-ACKs and the
// flooder never sees them. Designs and rates are interleaved within one run
// (ABBA order over the rounds) and the table reports medians, because the
// machine varies by 20-40 % from run to run: the ratios (spoki/echo-batched,
// spoki/echo-tun, spoki/kernel, ...) are the figures to compare across runs.
//
// SYN-ACKs are counted where they arrive, at the sink's link (raw-socket
// replies never pass the TUN's counters); the TUN's RX packets are what
// the program wrote to it, its TX packets what the kernel handed to the
// program and its TX dropped what it could not. spoki's own
// stats lines give its drops and its live heap; /proc gives RSS and CPU.
//
// Run it as root, once:
//
//	make build && SPOKI_BIN=$PWD/bin/spoki go test -run '^$' -bench Flood -benchtime 1x -v ./test
//
// Knobs (environment): SPOKI_BENCH_ROUNDS (rounds per design and flood,
// default 2), SPOKI_BENCH_PLACEMENTS ("shared,pinned" by default; "shared"
// alone halves the time; "spread" is a third, opt-in one), SPOKI_BENCH_KINDS ("regular,irregular" by
// default), SPOKI_BENCH_DESIGNS ("echo-tun,echo-batched,spoki,kernel" by default;
// "spoki-tun" adds spoki with --tun-replies),
// SPOKI_BENCH_DURATION (each flood, 5s by default, 1s to 10s), SPOKI_BENCH_PROFILE=DIR (one extra
// run of the batched echo and of spoki, regular SYNs at SPOKI_BENCH_PROFILE_RATE packets
// per second, 100000 by default and 0 for the maximum, with a Go CPU profile of spoki and,
// if perf is installed, a perf record of each, written to DIR).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/spoki-telescope/spoki/lab"
)

// Benchmark settings. The flood is bounded by benchFloodDuration and stops
// by itself; everything else is a timeout that only a broken run reaches.
const (
	benchDefaultDuration = 5 * time.Second
	benchReadyTimeout    = 15 * time.Second
	benchSampleEvery     = 100 * time.Millisecond
	benchDrain           = 500 * time.Millisecond // counted after the flood ends
	benchSettle          = 1500 * time.Millisecond
	benchDefaultRounds   = 2
	benchClockTick       = 10 * time.Millisecond // USER_HZ is 100 on Linux
	benchPprofAddr       = "127.0.0.1:6060"      // inside the telescope namespace only
	benchProfileRate     = 100000                // default of SPOKI_BENCH_PROFILE_RATE: a rate both designs sustain, per-SYN cost without contention
	benchMiB             = 1 << 20
	// benchPort is every SYN's destination port: the kernel answers only
	// on a port with a listener, so all three designs get the same flood
	// to one port (telnet's, the telescopes' busiest).
	benchPort = 23
)

// benchFloodDuration bounds each flood (SPOKI_BENCH_DURATION, 1s to 10s);
// benchFloodTimeout is what only a broken flood reaches.
var (
	benchFloodDuration = benchDefaultDuration
	benchFloodTimeout  = benchFloodDuration + 20*time.Second
)

// Targets printed next to the figures; the benchmark does not assert them.
const (
	benchTargetSynacks   = 120000.0
	benchTargetRatio     = 0.9 // of the best I/O-only responder, echo-batched
	benchTargetHeapGrowB = 4 * benchMiB
	benchTargetRSSB      = 64 * benchMiB
	benchTargetCPUUS     = 1.5 // µs per SYN-ACK over echo-batched
)

// benchRates are the offered rates in packets per second; 0 is "as fast as
// the flooder can".
var benchRates = []int{0, 100000}

// benchCase is one flood of a round: its offered rate and whether its SYNs
// are irregular (ZMap-like: no options, TTL 255, IP ID 54321) or regular
// (an MSS option, TTL 64, random IP IDs).
type benchCase struct {
	rate      int
	irregular bool
}

// benchCases are the floods of every round. Both kinds at the maximum
// rate, where the responders differ; the 100 kpps flood, which gives the
// CPU per SYN-ACK without contention, only with regular SYNs, to keep the
// run near five minutes.
var benchCases = []benchCase{{0, false}, {0, true}, {100000, false}}

func (c benchCase) kind() string {
	if c.irregular {
		return "irregular"
	}
	return "regular"
}

func (c benchCase) name() string { return benchRateName(c.rate) + " " + c.kind() }

// benchDesign is one responder under test.
type benchDesign string

const (
	// benchEcho is `spoki echo`: each SYN-ACK written back to the TUN.
	benchEcho benchDesign = "echo-tun"
	// benchEchoBatched is `spoki echo --raw-replies`: the SYN-ACKs of each
	// read batch in one sendmmsg on raw IP sockets, the best I/O-only
	// responder on this TUN (docs/benchmarks.md#batched-replies).
	benchEchoBatched benchDesign = "echo-batched"
	// benchSpoki is `spoki run` with its defaults (batched raw replies).
	benchSpoki benchDesign = "spoki"
	// benchSpokiTun is `spoki run --tun-replies`: spoki before batched
	// replies. Opt-in (SPOKI_BENCH_DESIGNS).
	benchSpokiTun benchDesign = "spoki-tun"
	// benchKernel is the Linux kernel's own SYN-cookie responder in the
	// telescope namespace: the prefix as a local route (AnyIP),
	// tcp_syncookies=2 and one listener on benchPort (docs/benchmarks.md#the-kernel).
	benchKernel benchDesign = "kernel"
	// benchSpoki2 is spoki again with the flags of SPOKI_BENCH_ARGS2 (e.g.
	// "--queues 2" against SPOKI_BENCH_ARGS="--queues 1"), side by side
	// in the same run; only when SPOKI_BENCH_DESIGNS names it. SPOKI_BIN2
	// gives it another build.
	benchSpoki2 benchDesign = "spoki2"
)

// benchDesigns are the default responders, in the order of even rounds
// (odd rounds run them in reverse); benchAllDesigns adds the opt-in ones.
var (
	benchDesigns    = []benchDesign{benchEcho, benchEchoBatched, benchSpoki, benchKernel}
	benchAllDesigns = []benchDesign{benchEcho, benchEchoBatched, benchSpoki, benchSpokiTun, benchKernel, benchSpoki2}
)

// isSpoki and isEcho group the designs by program.
func (d benchDesign) isSpoki() bool { return d == benchSpoki || d == benchSpokiTun || d == benchSpoki2 }
func (d benchDesign) isEcho() bool  { return d == benchEcho || d == benchEchoBatched }

// benchPlacement says where the flooder, the receive work and the
// responder run (docs/benchmarks.md#placements: measure both, neither is fair alone).
type benchPlacement string

const (
	// benchShared leaves everything to the scheduler (kernel defaults).
	benchShared benchPlacement = "shared"
	// benchPinned is "one receive core" with the host setting of README
	// "Host settings": the flooder on CPU0, the telescope host's receive
	// work on its uplink in a threaded NAPI kernel thread pinned to CPU1
	// (lab.Lab.SetThreadedNAPI), the responder on CPU1.
	benchPinned benchPlacement = "pinned"
	// benchPinnedSoftirq is "one receive core" with kernel defaults: RPS
	// moving the receive work to CPU1 as a softirq, the flooder on CPU0,
	// the responder on CPU1. The blast livelocks the responder there
	// (docs/benchmarks.md#livelock); opt-in, for the before/after.
	benchPinnedSoftirq benchPlacement = "pinned-softirq"
	// benchSpread leaves the processes to the scheduler but spreads the
	// telescope host's receive work over every CPU with RPS. Without it,
	// the veth runs the host's whole receive path, the kernel responder's
	// SYN cookies included, in the flooder's own send, on the flooder's
	// core, so the flooder can never outrun the kernel. Not in the
	// defaults (time): SPOKI_BENCH_PLACEMENTS=spread.
	benchSpread benchPlacement = "spread"
)

// benchSample is one reading taken during a run.
type benchSample struct {
	at                         time.Time
	tunRx, tunTx, tunTxDropped uint64 // TUN: written by the program, handed to it, not handed
	sinkRx                     uint64 // RX packets of the sink's link: the SYN-ACKs that arrived
	kernelOut                  uint64 // kernel responder only: SYN-ACKs that left on the sink link
	rssB                       uint64
	cpuTicks                   uint64 // utime+stime of the responder
	userTicks                  uint64 // utime alone: its own code, not the kernel's work for it
	napiNS                     uint64 // pinned placement: run time of the uplink's NAPI threads
	boxBusy, boxTotal          uint64 // /proc/stat, all CPUs
	// synacks is the design's SYN-ACK count: sinkRx for the TUN designs,
	// TcpExtSyncookiesSent for the kernel.
	synacks uint64
}

// benchStats is one parsed stats (or final) line of spoki.
type benchStats struct {
	at                                time.Time
	msg                               string
	packetsIn, synacksOut             uint64
	drops, recordsDropped, tunDropped uint64
	txErrors, recordWaits             uint64
	heapLive, rss                     uint64
	hasHeap                           bool
}

// benchResult is what one run measured.
type benchResult struct {
	design    benchDesign
	rate      int
	irregular bool
	placement benchPlacement
	round     int

	floodSent    uint64
	floodRefused uint64 // frames the kernel refused the flooder (a full NAPI ring drops there)
	floodElapsed time.Duration
	offeredPPS   float64

	synacks         uint64  // TUN designs: sink RX during the flood and the drain; kernel: TcpExtSyncookiesSent
	tunRx           uint64  // TUN designs: TUN RX, the SYN-ACKs written to the TUN (0 with raw replies)
	meanPPS         float64 // synacks / flood elapsed
	peakPPS         float64 // best 1 s window
	handed          uint64  // TUN TX: SYNs the program read
	tunDrops        uint64  // TUN TX dropped
	sinkRx          uint64  // cross-check: packets that reached the sink
	cpuPerSynackUS  float64 // responder CPU per SYN-ACK
	userPerSynackUS float64 // the user-space part of it
	cores           float64 // responder CPU over the flood, in cores
	napiCores       float64 // pinned placement: the uplink's NAPI threads (the receive work), in cores
	napiUS          float64 // and their run time per SYN forwarded to the TUN, in µs
	boxBusy         float64 // whole machine busy fraction over the flood

	rssBefore, rssPeak, rssAfter uint64

	// kernel only: the SYN-ACKs that left on the telescope's sink link
	// (synacks are those the kernel produced).
	kernelOut uint64
	// n is the number of runs a median was taken over.
	n int

	// spoki only.
	spokiDrops, recordsDropped    uint64
	txErrors                      uint64 // replies the kernel refused (tx_errors)
	recordWaits                   uint64 // reads after which a reader waited for the writer (record_waits)
	heapBefore, heapPeak, heapAft uint64
	hasHeap                       bool
	pidChecked                    bool
}

func BenchmarkFlood(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("BenchmarkFlood needs root (network namespaces, TUN, AF_PACKET)")
	}
	bin := benchSpokiBin(b)
	rounds := benchDefaultRounds
	if s := os.Getenv("SPOKI_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10 {
			b.Fatalf("SPOKI_BENCH_ROUNDS=%q: want 1 to 10", s)
		}
		rounds = n
	}
	placements := []benchPlacement{benchShared, benchPinned}
	if s := os.Getenv("SPOKI_BENCH_PLACEMENTS"); s != "" {
		placements = nil
		for _, p := range strings.Split(s, ",") {
			switch benchPlacement(p) {
			case benchShared, benchPinned, benchPinnedSoftirq, benchSpread:
				placements = append(placements, benchPlacement(p))
			default:
				b.Fatalf("SPOKI_BENCH_PLACEMENTS: unknown placement %q (shared, pinned, pinned-softirq, spread)", p)
			}
		}
	}
	cases := benchCases
	if s := os.Getenv("SPOKI_BENCH_KINDS"); s != "" {
		kinds := strings.Split(s, ",")
		for _, k := range kinds {
			if k != "regular" && k != "irregular" {
				b.Fatalf("SPOKI_BENCH_KINDS: unknown kind %q (regular, irregular)", k)
			}
		}
		cases = slices.DeleteFunc(slices.Clone(cases), func(c benchCase) bool { return !slices.Contains(kinds, c.kind()) })
	}
	designs := benchDesigns
	if s := os.Getenv("SPOKI_BENCH_DESIGNS"); s != "" {
		designs = nil
		for _, d := range strings.Split(s, ",") {
			if d == "echo" { // its name before the batched echo came
				d = string(benchEcho)
			}
			if !slices.Contains(benchAllDesigns, benchDesign(d)) {
				b.Fatalf("SPOKI_BENCH_DESIGNS: unknown design %q (%v)", d, benchAllDesigns)
			}
			designs = append(designs, benchDesign(d))
		}
	}
	if s := os.Getenv("SPOKI_BENCH_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > 10*time.Second {
			b.Fatalf("SPOKI_BENCH_DURATION=%q: want 1s to 10s", s)
		}
		benchFloodDuration, benchFloodTimeout = d, d+20*time.Second
	}
	profileRate := benchProfileRate
	if s := os.Getenv("SPOKI_BENCH_PROFILE_RATE"); s != "" {
		// 0 is the flooder's full speed: where the gap to the echo is.
		r, err := strconv.Atoi(s)
		if err != nil || r < 0 {
			b.Fatalf("SPOKI_BENCH_PROFILE_RATE=%q: want packets per second, 0 for as fast as the flooder can", s)
		}
		profileRate = r
	}
	if benchNumCPU() < 2 && slices.ContainsFunc(placements, benchPlacement.pinned) {
		b.Logf("only %d CPU: skipping the pinned placements", benchNumCPU())
		placements = slices.DeleteFunc(placements, benchPlacement.pinned)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
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
	b.Logf("lab %s: scanner %s (%s) -> telescope %s -> sink %s; %d CPUs, %d rounds, designs %v, %v floods",
		l.Name, l.Scanner, l.ScannerIface, l.Telescope, l.Sink, benchNumCPU(), rounds, designs, benchFloodDuration)
	if slices.Contains(designs, benchKernel) {
		if err := benchKernelSysctls(l); err != nil {
			b.Fatalf("kernel responder: %v", err)
		}
	}

	b.ResetTimer()
	var all []benchResult
	run := 0
	for _, pl := range placements {
		if err := benchSetPlacement(ctx, l, pl); err != nil {
			b.Fatalf("placement %s: %v", pl, err)
		}
		if err := benchHook(l, "SPOKI_BENCH_HOOK_PLACEMENT", "", pl); err != nil {
			b.Fatalf("hook: %v", err)
		}
		for round := 0; round < rounds; round++ {
			for _, c := range cases {
				order := slices.Clone(designs)
				if round%2 == 1 { // ABBA: drift over the run hits every design alike
					slices.Reverse(order)
				}
				for _, d := range order {
					run++
					r, err := benchRun(ctx, b, l, bin, benchRunConfig{
						design: d, rate: c.rate, irregular: c.irregular, placement: pl, round: round, index: run,
					})
					if err != nil {
						b.Fatalf("%s %s %s round %d: %v", pl, d, c.name(), round+1, err)
					}
					b.Log(r.line())
					all = append(all, r)
				}
			}
		}
	}
	if dir := os.Getenv("SPOKI_BENCH_PROFILE"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatalf("profile: %v", err)
		}
		if err := benchSetPlacement(ctx, l, benchShared); err != nil {
			b.Fatalf("profile: %v", err)
		}
		for _, d := range []benchDesign{benchEchoBatched, benchSpoki} {
			run++
			r, err := benchRun(ctx, b, l, bin, benchRunConfig{
				design: d, rate: profileRate, placement: benchShared, index: run, profileDir: dir,
			})
			if err != nil {
				b.Fatalf("profile run: %v", err)
			}
			benchPrintf(b, "profile run (not in the table, files in %s): %s\n", dir, r.line())
		}
	}
	b.StopTimer()

	for _, pl := range placements {
		benchReport(b, pl, cases, designs, all)
	}
}

// benchQueues is the number of TUN queues spoki runs with: its default
// (one per CPU) or the --queues of SPOKI_BENCH_ARGS.
func benchQueues() int {
	n := benchNumCPU()
	f := strings.Fields(os.Getenv("SPOKI_BENCH_ARGS"))
	for i, a := range f {
		v, ok := strings.CutPrefix(a, "--queues=")
		if !ok && (a == "--queues" || a == "-queues") && i+1 < len(f) {
			v, ok = f[i+1], true
		}
		if q, err := strconv.Atoi(v); ok && err == nil && q > 0 {
			n = q
		}
	}
	return n
}

// benchRunConfig names one run.
type benchRunConfig struct {
	design     benchDesign
	rate       int
	irregular  bool
	placement  benchPlacement
	round      int
	index      int
	profileDir string // spoki only: take a CPU profile into this directory
}

// benchRun starts one responder in the telescope namespace, floods it from
// the scanner namespace and stops it. The responder, its TUN and its log
// directory are gone when it returns, also on error (Lab.Close stops what
// is left if a Stop was never reached).
func benchRun(ctx context.Context, b *testing.B, l *lab.Lab, bin string, rc benchRunConfig) (res benchResult, err error) {
	res = benchResult{design: rc.design, rate: rc.rate, irregular: rc.irregular, placement: rc.placement, round: rc.round}
	if rc.design == benchKernel {
		return benchRunKernel(ctx, b, l, bin, rc, res)
	}
	tunName := fmt.Sprintf("%s-%c%d", l.Name, rc.design[0], rc.index)
	if len(tunName) > 15 { // IFNAMSIZ
		return res, fmt.Errorf("TUN name %q too long", tunName)
	}
	prefix := lab.Prefix4.String()
	// SPOKI_BIN2 runs spoki2 from another build (an older commit, say), so
	// that two versions meet the same floods in one run.
	if b2 := os.Getenv("SPOKI_BIN2"); rc.design == benchSpoki2 && b2 != "" {
		bin = b2
	}

	var args []string
	if rc.placement.pinned() {
		args = append(args, "-c", "1", bin)
	}
	switch rc.design {
	case benchEcho, benchEchoBatched:
		// As many queues as spoki reads: the same TUN for both.
		args = append(args, "echo", "--prefix", prefix, "--tun", tunName, "--queues", strconv.Itoa(benchQueues()))
		if rc.design == benchEchoBatched {
			args = append(args, "--raw-replies")
		}
	case benchSpoki, benchSpokiTun, benchSpoki2:
		logDir, err := os.MkdirTemp("", "spoki-bench-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(logDir) // a 10 s flood writes some 100 MB of records
		// --pprof (loopback of the telescope namespace, idle unless asked)
		// lets the benchmark force a GC before the flood: spoki's first GC
		// otherwise runs during start-up, before every queue is allocated,
		// and heap_live before the flood would be too low.
		args = append(args, "run", "--prefix", prefix, "--tun", tunName, "--log-dir", logDir,
			"--stats-interval", "1s", "--pprof", benchPprofAddr)
		if rc.design == benchSpokiTun {
			args = append(args, "--tun-replies")
		}
		// SPOKI_BENCH_ARGS adds flags to spoki run (e.g. "--queues 1").
		env := "SPOKI_BENCH_ARGS"
		if rc.design == benchSpoki2 {
			env = "SPOKI_BENCH_ARGS2"
		}
		args = append(args, strings.Fields(os.Getenv(env))...)
	}
	name := bin
	if rc.placement.pinned() {
		name = "taskset"
	}
	p, err := l.Start(l.Telescope, name, args...)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.Stop()
		}
	}()
	if rc.design.isEcho() {
		err = p.WaitFor("echo ready", benchReadyTimeout)
	} else {
		err = p.WaitForLine(lab.IsReadyLine, "ready", benchReadyTimeout)
	}
	if err != nil {
		return res, err
	}
	pid := p.Pid()
	if err := benchHook(l, "SPOKI_BENCH_HOOK_RESPONDER", tunName, rc.placement); err != nil {
		return res, err
	}
	want := benchComm(bin)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == want {
		res.pidChecked = true
	} else {
		b.Logf("pid %d is %q, not %q: RSS and CPU are of the wrong process", pid, strings.TrimSpace(string(comm)), want)
	}
	if rc.design.isSpoki() {
		// Force a GC, then one stats line gives the live heap before.
		tGC := time.Now()
		if err := benchFetchPprof(ctx, l, "heap?gc=1", os.DevNull); err != nil {
			return res, err
		}
		if err := benchWaitStatsAfter(p, tGC); err != nil {
			return res, err
		}
	}

	smp, err := benchNewSampler(l, tunName, pid)
	if err != nil {
		return res, err
	}
	if rc.placement == benchPinned {
		if smp.napi, err = l.UplinkNAPIThreads(); err != nil {
			return res, err
		}
	}
	defer smp.close()
	before, err := smp.read()
	if err != nil {
		return res, err
	}
	res.rssBefore = before.rssB
	sampler := startBenchSampling(smp.read, before)

	var profileErr chan error
	if rc.profileDir != "" {
		if rc.design.isSpoki() {
			if err := benchFetchPprof(ctx, l, "heap?gc=1", filepath.Join(rc.profileDir, "heap-before.pprof")); err != nil {
				b.Logf("profile: %v", err)
			}
		}
		profileErr = make(chan error, 1)
		go func() { profileErr <- benchProfile(ctx, l, rc.profileDir, rc.design, pid) }()
	}

	t0 := time.Now()
	if err := benchFlood(l, bin, rc, &res); err != nil {
		sampler.finish()
		return res, err
	}

	time.Sleep(benchDrain)
	drained, err := smp.read()
	if err != nil {
		sampler.finish()
		return res, err
	}
	time.Sleep(benchSettle - benchDrain) // let a stats line and the GC settle
	samples := sampler.finish()
	if after, err := smp.read(); err == nil {
		res.rssAfter = after.rssB
	}
	if profileErr != nil {
		if err := <-profileErr; err != nil {
			b.Logf("profile: %v", err)
		}
	}

	stopped = true
	if err := p.Stop(); err != nil {
		return res, fmt.Errorf("stop %s: %w\n%s", rc.design, err, benchTail(p.Output(), 20))
	}

	// Figures over [t0, flood end + drain].
	during := slices.DeleteFunc(slices.Clone(samples), func(s benchSample) bool { return s.at.After(drained.at) })
	during = append(during, drained)
	// Counted where they arrive: raw replies never pass the TUN's
	// counters, and the sink link is where every design's replies go.
	res.synacks = drained.sinkRx - before.sinkRx
	res.tunRx = drained.tunRx - before.tunRx
	res.handed = drained.tunTx - before.tunTx
	res.tunDrops = drained.tunTxDropped - before.tunTxDropped
	res.sinkRx = res.synacks
	res.meanPPS = float64(res.synacks) / res.floodElapsed.Seconds()
	res.peakPPS = benchPeak(during)
	cpu := time.Duration(drained.cpuTicks-before.cpuTicks) * benchClockTick
	if res.synacks > 0 {
		res.cpuPerSynackUS = float64(cpu.Microseconds()) / float64(res.synacks)
		user := time.Duration(drained.userTicks-before.userTicks) * benchClockTick
		res.userPerSynackUS = float64(user.Microseconds()) / float64(res.synacks)
	}
	res.cores = cpu.Seconds() / drained.at.Sub(before.at).Seconds()
	res.napiCores = float64(drained.napiNS-before.napiNS) / float64(drained.at.Sub(before.at).Nanoseconds())
	if fwd := res.handed + res.tunDrops; fwd > 0 {
		res.napiUS = float64(drained.napiNS-before.napiNS) / 1e3 / float64(fwd)
	}
	if dt := drained.boxTotal - before.boxTotal; dt > 0 {
		res.boxBusy = float64(drained.boxBusy-before.boxBusy) / float64(dt)
	}
	for _, s := range during {
		res.rssPeak = max(res.rssPeak, s.rssB)
	}

	if rc.design.isSpoki() {
		lines := benchParseStats(p.Output())
		var last, final *benchStats
		for i := range lines {
			s := &lines[i]
			switch {
			case s.msg == "final":
				final = s
			case s.at.Before(t0):
				last = s
			}
			if s.hasHeap {
				res.hasHeap = true
				if !s.at.Before(t0) && s.msg != "final" {
					res.heapPeak = max(res.heapPeak, s.heapLive)
				}
			}
		}
		if last == nil || final == nil {
			return res, fmt.Errorf("spoki printed no stats line before the flood or no final line:\n%s", benchTail(p.Output(), 20))
		}
		res.spokiDrops = final.drops - last.drops
		if res.spokiDrops > 2 {
			// More than the start-up's few: say which causes (totals of
			// the run, the start-up's included).
			f := attackLastLine(p.Output(), "final")
			b.Logf("%s %s, rate %d (0 = max), irregular %v: spoki's drops by cause: %s", rc.placement, rc.design, rc.rate, rc.irregular, attackFields(f, func(k string) bool {
				return (strings.HasPrefix(k, "drop_") || strings.Contains(k, "_drop_")) && f[k] != "0"
			}))
		}
		res.recordsDropped = final.recordsDropped - last.recordsDropped
		res.txErrors = final.txErrors - last.txErrors
		res.recordWaits = final.recordWaits - last.recordWaits
		res.heapBefore, res.heapAft = last.heapLive, final.heapLive
		res.heapPeak = max(res.heapPeak, res.heapBefore, res.heapAft)
		if final.synacksOut-last.synacksOut < res.synacks {
			// spoki counts what it sent; the sink what arrived. A deficit
			// would mean the sink counted packets spoki did not send.
			b.Logf("spoki counted %d SYN-ACKs, the sink %d", final.synacksOut-last.synacksOut, res.synacks)
		}
	}
	return res, nil
}

// benchSampler reads the counters of one run.
type benchSampler struct {
	pid           int
	tun           string
	telNS, sinkNS netns.NsHandle
	telH, sinkH   *netlink.Handle
	// kernelUplink, when set, makes read count the kernel responder: the
	// SYN-ACKs are then TcpExtSyncookiesSent of the telescope namespace
	// (what the kernel produced, as the TUN's RX packets are what a program
	// wrote), kernelUplink is its scanner link, whose RX packets (and RX
	// dropped) are the SYNs that reached the host, and tun its sink link,
	// whose TX packets are the SYN-ACKs that left it (kernelOut).
	kernelUplink string
	lab          *lab.Lab
	// napi are the uplink's NAPI threads (pinned placement), whose run
	// time read sums.
	napi []int
}

func benchNewSampler(l *lab.Lab, tun string, pid int) (*benchSampler, error) {
	s := &benchSampler{pid: pid, tun: tun, telNS: -1, sinkNS: -1, lab: l}
	var err error
	if s.telNS, err = netns.GetFromName(l.Telescope); err != nil {
		return nil, fmt.Errorf("netns %s: %w", l.Telescope, err)
	}
	if s.sinkNS, err = netns.GetFromName(l.Sink); err != nil {
		s.close()
		return nil, fmt.Errorf("netns %s: %w", l.Sink, err)
	}
	if s.telH, err = netlink.NewHandleAt(s.telNS); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink in %s: %w", l.Telescope, err)
	}
	if s.sinkH, err = netlink.NewHandleAt(s.sinkNS); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink in %s: %w", l.Sink, err)
	}
	return s, nil
}

func (s *benchSampler) close() {
	if s.telH != nil {
		s.telH.Close()
	}
	if s.sinkH != nil {
		s.sinkH.Close()
	}
	if s.telNS >= 0 {
		s.telNS.Close()
	}
	if s.sinkNS >= 0 {
		s.sinkNS.Close()
	}
}

// linkStats returns the RX packets of an interface.
func (s *benchSampler) linkStats(h *netlink.Handle, name string) (uint64, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	st := link.Attrs().Statistics
	if st == nil {
		return 0, fmt.Errorf("no statistics for %s", name)
	}
	return st.RxPackets, nil
}

func (s *benchSampler) read() (benchSample, error) {
	out := benchSample{at: time.Now()}
	link, err := s.telH.LinkByName(s.tun)
	if err != nil {
		return out, fmt.Errorf("tun %s: %w", s.tun, err)
	}
	if s.kernelUplink != "" {
		up, err := s.telH.LinkByName(s.kernelUplink)
		if err != nil {
			return out, fmt.Errorf("uplink %s: %w", s.kernelUplink, err)
		}
		if out.tunRx, err = benchTcpExt(s.lab, "SyncookiesSent"); err != nil {
			return out, err
		}
		out.synacks = out.tunRx
		if st := link.Attrs().Statistics; st != nil {
			out.kernelOut = st.TxPackets
		}
		if st := up.Attrs().Statistics; st != nil {
			out.tunTx, out.tunTxDropped = st.RxPackets, st.RxDropped
		}
		out.boxBusy, out.boxTotal, _ = benchBoxCPU()
		return out, nil
	}
	if st := link.Attrs().Statistics; st != nil {
		out.tunRx, out.tunTx, out.tunTxDropped = st.RxPackets, st.TxPackets, st.TxDropped
	}
	out.sinkRx, err = s.linkStats(s.sinkH, s.lab.SinkIface)
	if err != nil {
		return out, fmt.Errorf("sink %s: %w", s.lab.SinkIface, err)
	}
	out.synacks = out.sinkRx
	out.rssB, _ = benchVmRSS(s.pid)
	out.cpuTicks, out.userTicks, _ = benchCPUTimes(s.pid)
	for _, pid := range s.napi {
		out.napiNS += benchRunNS(pid)
	}
	out.boxBusy, out.boxTotal, _ = benchBoxCPU()
	return out, nil
}

// benchVmRSS reads VmRSS from /proc/PID/status, in bytes.
func benchVmRSS(pid int) (uint64, error) { return benchProcStatus(pid, "VmRSS") }

// benchProcStatus reads one size field (in kB there) of /proc/PID/status,
// in bytes: VmRSS, RssAnon (the process's own memory) or RssFile (the
// binary's code and other file pages, the same under any load).
func benchProcStatus(pid int, key string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == key+":" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no " + key)
}

// benchCPUTicks reads utime+stime (all threads) from /proc/PID/stat.
func benchCPUTicks(pid int) (uint64, error) {
	all, _, err := benchCPUTimes(pid)
	return all, err
}

// benchCPUTimes reads utime+stime and utime alone (all threads) from
// /proc/PID/stat: where two designs differ in CPU per SYN-ACK, the split
// says whether their own code or the kernel's work for them differs.
func benchCPUTimes(pid int) (all, user uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	return ut + st, ut, errors.Join(err1, err2)
}

// benchRunNS reads the time a task has run, in ns (/proc/PID/schedstat;
// 0 if unreadable).
func benchRunNS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseUint(f[0], 10, 64)
	return v
}

// benchBoxCPU reads the busy and total ticks of all CPUs from /proc/stat.
func benchBoxCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("bad /proc/stat")
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		if i == 8 || i == 9 { // guest time is already in user
			continue
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

func benchNumCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 1
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		if !found {
			n++
			continue
		}
		z, _ := strconv.Atoi(hi)
		n += z - a + 1
	}
	return n
}

// benchPeak is the best rate of SYN-ACKs over any window of at least one
// second between two samples.
func benchPeak(s []benchSample) float64 {
	best := 0.0
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			dt := s[j].at.Sub(s[i].at)
			if dt >= time.Second {
				best = max(best, float64(s[j].synacks-s[i].synacks)/dt.Seconds())
				break
			}
		}
	}
	return best
}

// pinned says whether the placement pins the flooder to CPU0 and the
// responder to CPU1.
func (pl benchPlacement) pinned() bool { return pl == benchPinned || pl == benchPinnedSoftirq }

// benchSetPlacement sets the telescope host's receive path on its
// scanner-side veth: threaded NAPI pinned to CPU1 for the pinned placement
// (RPS off: it would hand the frames to CPU1's softirq again), and for the
// others kernel defaults (no NAPI) with receive-packet steering to CPU1
// (pinned-softirq), to every CPU (spread) or off (shared).
func benchSetPlacement(ctx context.Context, l *lab.Lab, pl benchPlacement) error {
	napi := pl == benchPinned
	if err := l.SetThreadedNAPI(ctx, napi); err != nil {
		return err
	}
	if napi {
		if err := l.PinUplinkNAPI(1); err != nil {
			return err
		}
	}
	mask := "0"
	switch pl {
	case benchPinnedSoftirq:
		mask = "2"
	case benchSpread:
		mask = strconv.FormatUint(1<<min(benchNumCPU(), 32)-1, 16)
	}
	path := fmt.Sprintf("/sys/class/net/%s/queues/rx-0/rps_cpus", l.TelescopeIface)
	cmd := l.Command(ctx, l.Telescope, "sh", "-c", fmt.Sprintf("echo %s > %s", mask, path))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rps_cpus=%s on %s: %w: %s", mask, l.TelescopeIface, err, bytes.TrimSpace(out))
	}
	return nil
}

// benchProfile records the responder with perf (when installed) for 8 s,
// starting a second into the flood, into DIR/perf-DESIGN.data. For spoki it
// also takes a Go CPU profile over the same 8 s (cpu.pprof, through the
// --pprof listener) and then, still during the flood, a heap profile after
// a forced GC (heap-during.pprof).
func benchProfile(ctx context.Context, l *lab.Lab, dir string, d benchDesign, pid int) error {
	time.Sleep(time.Second)
	var wg sync.WaitGroup
	var perfErr error
	if perf, err := exec.LookPath("perf"); err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.CommandContext(ctx, perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(pid),
				"-o", filepath.Join(dir, "perf-"+string(d)+".data"), "--", "sleep", "8").CombinedOutput()
			if err != nil {
				perfErr = fmt.Errorf("perf record: %w: %s", err, bytes.TrimSpace(out))
			}
		}()
	}
	var err error
	if d == benchSpoki {
		err = errors.Join(benchFetchPprof(ctx, l, "profile?seconds=8", filepath.Join(dir, "cpu.pprof")),
			benchFetchPprof(ctx, l, "heap?gc=1", filepath.Join(dir, "heap-during.pprof")))
	}
	wg.Wait()
	return errors.Join(err, perfErr)
}

// benchFetchPprof saves spoki's /debug/pprof/WHAT to path, fetched with
// curl inside the telescope namespace, where the --pprof listener is.
func benchFetchPprof(ctx context.Context, l *lab.Lab, what, path string) error {
	url := "http://" + benchPprofAddr + "/debug/pprof/" + what
	out, err := l.Command(ctx, l.Telescope, "curl", "-sS", "-f", "-o", path, url).CombinedOutput()
	if err != nil {
		return fmt.Errorf("curl %s: %w: %s", url, err, bytes.TrimSpace(out))
	}
	return nil
}

// benchFlood runs one bounded flood from the scanner namespace, the same
// for every design, and fills res's flood figures.
func benchFlood(l *lab.Lab, bin string, rc benchRunConfig, res *benchResult) error {
	floodArgs := []string{"probe", "flood", "--iface", l.ScannerIface, "--prefix", lab.Prefix4.String(),
		"--src", lab.FloodSrc4.String(), "--kind", "syn", "--duration", benchFloodDuration.String(),
		"--rate", strconv.Itoa(rc.rate), "--port", strconv.Itoa(benchPort)}
	if rc.irregular {
		floodArgs = append(floodArgs, "--irregular")
	}
	floodName := bin
	if rc.placement.pinned() {
		floodName = "taskset"
		floodArgs = append([]string{"-c", "0", bin}, floodArgs...)
	}
	t0 := time.Now()
	f, err := l.Start(l.Scanner, floodName, floodArgs...)
	if err != nil {
		return err
	}
	select {
	case <-f.Done():
	case <-time.After(benchFloodTimeout):
		_ = f.Stop()
		return fmt.Errorf("flood did not stop by itself within %v", benchFloodTimeout)
	}
	tEnd := time.Now()
	if err := f.Stop(); err != nil {
		return fmt.Errorf("flood: %w\n%s", err, f.Output())
	}
	res.floodSent, res.floodElapsed, err = benchParseFlood(f.Output())
	res.floodRefused = benchParseRefused(f.Output())
	if err != nil {
		return err
	}
	if res.floodElapsed <= 0 {
		res.floodElapsed = tEnd.Sub(t0)
	}
	res.offeredPPS = float64(res.floodSent) / res.floodElapsed.Seconds()
	return nil
}

var benchFloodRE = regexp.MustCompile(`sent (\d+) packets in ([0-9.]+)s \(([0-9.]+) pps\), (\d+) refused`)

// benchParseFlood reads the flood's result line.
func benchParseFlood(out string) (sent uint64, elapsed time.Duration, err error) {
	m := benchFloodRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no result line in the flood's output:\n%s", benchTail(out, 10))
	}
	sent, _ = strconv.ParseUint(m[1], 10, 64)
	sec, _ := strconv.ParseFloat(m[2], 64)
	return sent, time.Duration(sec * float64(time.Second)), nil
}

// benchWaitStatsAfter waits for a stats line after t (a forced GC). Off a
// terminal spoki writes no line while nothing it shows changes, so when
// none comes and one was written before, that one still holds.
func benchWaitStatsAfter(p *lab.Process, t time.Time) error {
	after := func(line string) bool {
		st := benchParseStats(line)
		return len(st) == 1 && st[0].at.After(t)
	}
	err := p.WaitForLine(after, "stats line after the forced GC", 3*time.Second)
	if err != nil && slices.ContainsFunc(benchParseStats(p.Output()), func(s benchStats) bool { return s.msg == "stats" }) {
		return nil
	}
	return err
}

// benchParseRefused reads the frames the kernel refused the flooder from
// its result line (0 without one).
func benchParseRefused(out string) uint64 {
	m := benchFloodRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[4], 10, 64)
	return n
}

// benchParseStats reads spoki's stats and final lines (slog text format).
// The counters' totals are in the final line only (the periodic lines
// carry rates), so a total read from a periodic line is 0: what is counted
// from "the last line before the flood" on includes the start-up's few
// drops (ICMPv6 from the kernel on the TUN).
func benchParseStats(out string) []benchStats {
	var res []benchStats
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "msg=stats ") && !strings.Contains(line, "msg=final ") {
			continue
		}
		var s benchStats
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, _ := e2eStatNumber(v)
			switch k {
			case "time":
				s.at, _ = time.Parse(time.RFC3339Nano, v)
			case "msg":
				s.msg = v
			case "packets_in":
				s.packetsIn = n
			case "synacks_out":
				s.synacksOut = n
			case "drops":
				s.drops = n
			case "records_dropped":
				s.recordsDropped = n
			case "tx_errors":
				s.txErrors = n
			case "record_waits":
				s.recordWaits = n
			case "tun_dropped":
				s.tunDropped = n
			case "heap_live":
				s.heapLive, s.hasHeap = n, true
			case "rss":
				s.rss = n
			}
		}
		res = append(res, s)
	}
	return res
}

// benchReport prints one placement's table of medians, per flood (rate and
// SYN kind), with every ratio between the designs, and reports its metrics.
func benchReport(b *testing.B, pl benchPlacement, cases []benchCase, designs []benchDesign, all []benchResult) {
	var w strings.Builder
	fmt.Fprintf(&w, "\nBenchmarkFlood, placement %s (%s): medians over rounds, %v spoofed SYN floods to port %d, sink egress\n",
		pl, benchPlacementDoc(pl), benchFloodDuration, benchPort)
	fmt.Fprintf(&w, "%-14s %-12s %3s %9s %9s %5s %9s %9s %9s %8s %8s %8s %6s %5s %5s %22s %22s\n",
		"flood", "design", "n", "offered/s", "synack/s", "ans%", "peak1s/s", "synsIn", "inDrops", "spkDrops", "recDrops",
		"tunRx", "µs/SA", "cores", "box%", "RSS MiB bef/peak/aft", "heap MiB bef/peak/aft")
	type pair struct{ a, b benchDesign }
	pairs := []pair{{benchSpoki, benchEchoBatched}, {benchSpoki, benchEcho}, {benchSpoki, benchKernel},
		{benchSpoki, benchSpokiTun}, {benchEchoBatched, benchEcho}, {benchSpokiTun, benchEcho},
		{benchEchoBatched, benchKernel}, {benchEcho, benchKernel}, {benchSpoki2, benchSpoki}, {benchSpoki2, benchEchoBatched}}
	// ratios holds each pair's ratio of the medians, roundRatios the median
	// of its per-round ratios, for the targets below.
	ratios, roundRatios := map[benchCase]map[pair]float64{}, map[benchCase]map[pair]float64{}
	for _, c := range cases {
		med := map[benchDesign]benchResult{}
		for _, d := range benchAllDesigns {
			if !slices.Contains(designs, d) {
				continue
			}
			m, ok := benchMedianFor(all, pl, c, d)
			if !ok {
				continue
			}
			med[d] = m
			heap := "n/a"
			if d.isSpoki() && m.hasHeap {
				heap = fmt.Sprintf("%.1f/%.1f/%.1f", benchMiBf(m.heapBefore), benchMiBf(m.heapPeak), benchMiBf(m.heapAft))
			}
			drops, rec := "-", "-"
			if d.isSpoki() {
				drops, rec = strconv.FormatUint(m.spokiDrops, 10), strconv.FormatUint(m.recordsDropped, 10)
			}
			us, cores, rss := fmt.Sprintf("%.2f", m.cpuPerSynackUS), fmt.Sprintf("%.2f", m.cores),
				fmt.Sprintf("%.1f/%.1f/%.1f", benchMiBf(m.rssBefore), benchMiBf(m.rssPeak), benchMiBf(m.rssAfter))
			if d == benchKernel {
				us, cores, rss = "-", "-", "-"
			}
			tunRx := strconv.FormatUint(m.tunRx, 10)
			if d == benchKernel {
				tunRx = "-"
			}
			fmt.Fprintf(&w, "%-14s %-12s %3d %9.0f %9.0f %5.1f %9.0f %9d %9d %8s %8s %8s %6s %5s %5.0f %22s %22s\n",
				c.name(), d, m.n, m.offeredPPS, m.meanPPS, 100*float64(m.synacks)/max(float64(m.floodSent), 1), m.peakPPS, m.handed+m.tunDrops, m.tunDrops,
				drops, rec, tunRx, us, cores, 100*m.boxBusy, rss, heap)
		}
		ratios[c], roundRatios[c] = map[pair]float64{}, map[pair]float64{}
		for _, pr := range pairs {
			x, okX := med[pr.a]
			y, okY := med[pr.b]
			if !okX || !okY || y.meanPPS <= 0 {
				continue
			}
			// The ratio of medians, and the median of the per-round ratios
			// (each run against the other design's run of the same round).
			r := x.meanPPS / y.meanPPS
			ratios[c][pr] = r
			perRound := benchRoundRatios(all, pl, c, pr.a, pr.b)
			roundRatios[c][pr] = benchMedian(perRound)
			fmt.Fprintf(&w, "%-14s ratio %s/%s: mean %.2f (per-round median %.2f", c.name(), pr.a, pr.b, r, roundRatios[c][pr])
			if len(perRound) > 1 {
				// One run's ratio moves by more than most changes: the
				// rounds' own ratios show how far.
				fmt.Fprintf(&w, " of")
				for _, v := range perRound {
					fmt.Fprintf(&w, " %.2f", v)
				}
			}
			fmt.Fprintf(&w, "), peak %.2f", x.peakPPS/max(y.peakPPS, 1))
			if pr.b != benchKernel {
				fmt.Fprintf(&w, ", µs/SA %.2f vs %.2f (+%.2f µs per SYN; user %.2f vs %.2f)", x.cpuPerSynackUS, y.cpuPerSynackUS, x.cpuPerSynackUS-y.cpuPerSynackUS, x.userPerSynackUS, y.userPerSynackUS)
			}
			fmt.Fprintln(&w)
		}
		if k, ok := med[benchKernel]; ok {
			// Against what the flooder sent or had refused: the uplink's RX
			// dropped also counts frames the flooder does not report as
			// sent, while a refusal is the host's receive side dropping
			// (a full backlog, or the full NAPI ring of the pinned
			// placement) and so counts as unanswered.
			answered := float64(k.synacks) / max(float64(k.floodSent+k.floodRefused), 1)
			verdict := "NOT saturated: it produced a SYN-ACK for every SYN sent, so the flooder is the limit (in the shared placement the receive softirq runs on the flooder's core), and every ratio to the kernel is an upper bound"
			if answered < 0.98 {
				verdict = "saturated: it left SYNs unanswered"
			}
			fmt.Fprintf(&w, "%-14s kernel: SYN-ACKs for %.1f %% of the %d SYNs sent and %d refused to the flooder (uplink RX %d, RX dropped %d; %d SYN-ACKs left on the sink link): %s\n",
				c.name(), 100*answered, k.floodSent, k.floodRefused, k.handed, k.tunDrops, k.kernelOut, verdict)
		}
	}
	// Targets, next to the figures; not asserted.
	maxReg := benchCase{0, false}
	if s, ok := benchMedianFor(all, pl, maxReg, benchSpoki); ok {
		toEcho := pair{benchSpoki, benchEchoBatched}
		r := ratios[maxReg][toEcho]
		fmt.Fprintf(&w, "targets (max rate, regular, spoki): synack/s %.0f (target >= %.0f: %s), ratio to echo-batched %.2f (>= %.1f: %s), heap growth %.2f MiB (< %d: %s), RSS peak %.1f MiB (< %d: %s)\n",
			s.meanPPS, benchTargetSynacks, benchOK(s.meanPPS >= benchTargetSynacks),
			r, benchTargetRatio, benchOK(r >= benchTargetRatio),
			benchMiBf(benchSub(s.heapPeak, s.heapBefore)), benchTargetHeapGrowB/benchMiB, benchOK(s.hasHeap && benchSub(s.heapPeak, s.heapBefore) < benchTargetHeapGrowB),
			benchMiBf(s.rssPeak), benchTargetRSSB/benchMiB, benchOK(s.rssPeak < benchTargetRSSB))
		if e, ok := benchMedianFor(all, pl, maxReg, benchEchoBatched); ok {
			// The rounds' own ratios as well: one slow round moves the
			// ratio of the means by more than most changes do.
			rr := roundRatios[maxReg][toEcho]
			d := s.cpuPerSynackUS - e.cpuPerSynackUS
			fmt.Fprintf(&w, "targets (max rate, regular, spoki): ratio to echo-batched as the median of the rounds' own %.2f (>= %.1f: %s), CPU %+.2f µs per SYN-ACK over echo-batched (<= %+.1f: %s)\n",
				rr, benchTargetRatio, benchOK(rr >= benchTargetRatio), d, benchTargetCPUUS, benchOK(d <= benchTargetCPUUS))
		}
	}
	fmt.Fprintf(&w, "columns: flood = offered rate and SYN kind; ans%% = SYN-ACKs per SYN sent (near 100: the design answered all it was offered, the flooder was the limit, and a ratio between two such designs compares the flooder's rates, not theirs); synack/s = SYN-ACKs / flood time (TUN designs: RX packets of the sink's link, where the SYN-ACKs arrive, whether written to the TUN or sent on raw sockets; kernel: TcpExtSyncookiesSent, the SYN-ACKs it produced); synsIn = SYNs handed on (TUN: TX + TX dropped of the TUN, what the kernel forwarded to it; kernel: RX + RX dropped of the uplink); inDrops = the dropped part (TUN TX dropped; uplink RX dropped); spkDrops, recDrops = spoki's drops and records_dropped; tunRx = RX packets of the TUN, the SYN-ACKs written to it (0 with raw replies, which bypass it); µs/SA = responder CPU per SYN-ACK; cores = responder CPU; box%% = whole machine busy (the kernel's only CPU figure: its work is softirq); RSS = VmRSS of the responder before the flood, peak during it, 1.5 s after it; heap = spoki's heap_live (live heap at the last GC: before = after a GC forced through --pprof, peak = stats lines during the flood, after = the final line)\n")
	benchPrintf(b, "%s", w.String())

	suffix := ""
	if pl != benchShared {
		suffix = "_" + string(pl)
	}
	for _, c := range cases {
		rn := benchRateName(c.rate)
		if c.irregular {
			rn += "_irr"
		}
		for _, d := range designs {
			if m, ok := benchMedianFor(all, pl, c, d); ok {
				b.ReportMetric(m.meanPPS, string(d)+"_synacks/s_"+rn+suffix)
				if d == benchSpoki {
					b.ReportMetric(benchMiBf(m.rssPeak), "rss_peak_MiB_"+rn+suffix)
				}
			}
		}
		for pr, r := range ratios[c] {
			b.ReportMetric(r, "ratio_"+string(pr.a)+"/"+string(pr.b)+"_"+rn+suffix)
		}
	}
}

func benchPlacementDoc(pl benchPlacement) string {
	switch pl {
	case benchPinned:
		return "flooder on CPU0, threaded NAPI of the telescope's veth on CPU1, responder on CPU1"
	case benchPinnedSoftirq:
		return "flooder on CPU0, RPS of the telescope's veth to CPU1 (softirq), responder on CPU1"
	case benchSpread:
		return "nothing pinned, RPS of the telescope's veth over every CPU"
	}
	return "kernel defaults, nothing pinned"
}

func benchMedianFor(all []benchResult, pl benchPlacement, c benchCase, d benchDesign) (benchResult, bool) {
	var rs []benchResult
	for _, r := range all {
		if r.placement == pl && r.rate == c.rate && r.irregular == c.irregular && r.design == d {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return benchResult{}, false
	}
	m := benchMedianResult(rs)
	m.n = len(rs)
	return m, true
}

// benchRoundRatios are the ratios x/y within each round (x's SYN-ACK/s
// over y's of the same round), in the rounds' order.
func benchRoundRatios(all []benchResult, pl benchPlacement, c benchCase, x, y benchDesign) []float64 {
	byRound := map[int][2]float64{}
	for _, r := range all {
		if r.placement != pl || r.rate != c.rate || r.irregular != c.irregular {
			continue
		}
		v := byRound[r.round]
		switch r.design {
		case y:
			v[0] = r.meanPPS
		case x:
			v[1] = r.meanPPS
		}
		byRound[r.round] = v
	}
	rounds := slices.Sorted(maps.Keys(byRound))
	var rs []float64
	for _, i := range rounds {
		if v := byRound[i]; v[0] > 0 && v[1] > 0 {
			rs = append(rs, v[1]/v[0])
		}
	}
	return rs
}

// benchMedianResult takes the median of every figure independently.
func benchMedianResult(rs []benchResult) benchResult {
	m := rs[0]
	f := func(get func(r benchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		return benchMedian(v)
	}
	u := func(get func(r benchResult) uint64) uint64 {
		return uint64(math.Round(f(func(r benchResult) float64 { return float64(get(r)) })))
	}
	m.offeredPPS = f(func(r benchResult) float64 { return r.offeredPPS })
	m.meanPPS = f(func(r benchResult) float64 { return r.meanPPS })
	m.peakPPS = f(func(r benchResult) float64 { return r.peakPPS })
	m.cpuPerSynackUS = f(func(r benchResult) float64 { return r.cpuPerSynackUS })
	m.userPerSynackUS = f(func(r benchResult) float64 { return r.userPerSynackUS })
	m.cores = f(func(r benchResult) float64 { return r.cores })
	m.napiCores = f(func(r benchResult) float64 { return r.napiCores })
	m.napiUS = f(func(r benchResult) float64 { return r.napiUS })
	m.boxBusy = f(func(r benchResult) float64 { return r.boxBusy })
	m.synacks = u(func(r benchResult) uint64 { return r.synacks })
	m.handed = u(func(r benchResult) uint64 { return r.handed })
	m.tunDrops = u(func(r benchResult) uint64 { return r.tunDrops })
	m.sinkRx = u(func(r benchResult) uint64 { return r.sinkRx })
	m.tunRx = u(func(r benchResult) uint64 { return r.tunRx })
	m.spokiDrops = u(func(r benchResult) uint64 { return r.spokiDrops })
	m.recordsDropped = u(func(r benchResult) uint64 { return r.recordsDropped })
	m.txErrors = u(func(r benchResult) uint64 { return r.txErrors })
	m.recordWaits = u(func(r benchResult) uint64 { return r.recordWaits })
	m.rssBefore = u(func(r benchResult) uint64 { return r.rssBefore })
	m.rssPeak = u(func(r benchResult) uint64 { return r.rssPeak })
	m.rssAfter = u(func(r benchResult) uint64 { return r.rssAfter })
	m.heapBefore = u(func(r benchResult) uint64 { return r.heapBefore })
	m.heapPeak = u(func(r benchResult) uint64 { return r.heapPeak })
	m.heapAft = u(func(r benchResult) uint64 { return r.heapAft })
	m.kernelOut = u(func(r benchResult) uint64 { return r.kernelOut })
	m.floodSent = u(func(r benchResult) uint64 { return r.floodSent })
	m.floodRefused = u(func(r benchResult) uint64 { return r.floodRefused })
	return m
}

func benchMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// line formats one run for the progress log.
func (r benchResult) line() string {
	c := benchCase{r.rate, r.irregular}
	if r.design == benchKernel {
		return fmt.Sprintf("%s round %d %s %-12s: offered %.0f/s, synack %.0f/s (peak %.0f), SYNs at the uplink %d, uplink drops %d, SYN-ACKs out on the sink link %d, sinkRx %d, box %.0f%%",
			r.placement, r.round+1, c.name(), r.design, r.offeredPPS, r.meanPPS, r.peakPPS,
			r.handed+r.tunDrops, r.tunDrops, r.kernelOut, r.sinkRx, 100*r.boxBusy)
	}
	s := fmt.Sprintf("%s round %d %s %-12s: offered %.0f/s (refused %.0f/s), synack %.0f/s (peak %.0f), fwdToTun %d, tunDrops %d, tunRx %d, %.2f µs/SA (user %.2f), %.2f cores, box %.0f%%, RSS %.1f/%.1f/%.1f MiB",
		r.placement, r.round+1, c.name(), r.design, r.offeredPPS, float64(r.floodRefused)/max(r.floodElapsed.Seconds(), 1e-9), r.meanPPS, r.peakPPS,
		r.handed+r.tunDrops, r.tunDrops, r.tunRx, r.cpuPerSynackUS, r.userPerSynackUS, r.cores, 100*r.boxBusy,
		benchMiBf(r.rssBefore), benchMiBf(r.rssPeak), benchMiBf(r.rssAfter))
	if r.placement == benchPinned {
		s += fmt.Sprintf(", NAPI thread %.2f cores (%.2f µs per SYN forwarded)", r.napiCores, r.napiUS)
	}
	if r.design.isSpoki() {
		s += fmt.Sprintf(", drops %d, records_dropped %d, record_waits %d, tx_errors %d", r.spokiDrops, r.recordsDropped, r.recordWaits, r.txErrors)
		if r.hasHeap {
			s += fmt.Sprintf(", heap %.2f/%.2f/%.2f MiB", benchMiBf(r.heapBefore), benchMiBf(r.heapPeak), benchMiBf(r.heapAft))
		}
	}
	if !r.pidChecked {
		s += " (pid not verified)"
	}
	return s
}

func benchRateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	return fmt.Sprintf("%dk", rate/1000)
}

func benchMiBf(v uint64) float64 { return float64(v) / benchMiB }

func benchSub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func benchOK(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// benchPrintf logs through b and prints to standard output, so that the
// figures show with -v and in the log of a failed run alike.
func benchPrintf(b *testing.B, format string, args ...any) {
	b.Helper()
	s := fmt.Sprintf(format, args...)
	b.Log(strings.TrimRight(s, "\n"))
	fmt.Print(s)
}

func benchTail(out string, n int) string {
	lines := strings.Split(out, "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// benchSpokiBin finds the spoki binary: SPOKI_BIN, else ../bin/spoki.
func benchSpokiBin(b *testing.B) string {
	if p := os.Getenv("SPOKI_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			b.Fatalf("SPOKI_BIN: %v", err)
		}
		return p
	}
	p, err := filepath.Abs("../bin/spoki")
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	b.Skipf("no spoki binary: set SPOKI_BIN or run make build (%v)", err)
	return ""
}

// benchLeftoverNamespaces lists namespaces whose names start with prefix.
func benchLeftoverNamespaces(prefix string) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// benchSampling reads a sample every benchSampleEvery, in its own goroutine,
// from its start until finish.
type benchSampling struct {
	samples    []benchSample // written by the goroutine until done
	stop, done chan struct{}
}

// startBenchSampler starts sampling with read; first is the sample taken
// before.
func startBenchSampling(read func() (benchSample, error), first benchSample) *benchSampling {
	s := &benchSampling{samples: []benchSample{first}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(benchSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if v, err := read(); err == nil {
					s.samples = append(s.samples, v)
				}
			}
		}
	}()
	return s
}

// finish stops the sampler and returns its samples, first one first; it
// may be called more than once.
func (s *benchSampling) finish() []benchSample {
	select {
	case <-s.done:
	default:
		close(s.stop)
		<-s.done
	}
	return s.samples
}

// benchHook runs the shell command in the environment variable env, if set,
// for experiments with host settings (docs/benchmarks.md#knobs):
// SPOKI_BENCH_HOOK_PLACEMENT after a placement is set,
// SPOKI_BENCH_HOOK_RESPONDER once each responder is ready (before its
// flood). The command runs on the host, as root, with TEL, SCAN (the
// namespaces), UP, SUP (the telescope's and the scanner's end of the
// uplink), TUN (the responder's TUN, empty for the placement hook) and PL
// (the placement) in its environment; it must return before the flood
// starts, and its output is printed. A failing hook fails the benchmark.
func benchHook(l *lab.Lab, env, tun string, pl benchPlacement) error {
	c := os.Getenv(env)
	if c == "" {
		return nil
	}
	cmd := exec.Command("sh", "-c", c)
	cmd.Env = append(os.Environ(), "TEL="+l.Telescope, "SCAN="+l.Scanner, "UP="+l.TelescopeIface, "SUP="+l.ScannerIface, "TUN="+tun, "PL="+string(pl))
	out, err := cmd.CombinedOutput()
	fmt.Printf("hook %s (%s): %s\n", env, pl, bytes.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("%s: %w: %s", env, err, bytes.TrimSpace(out))
	}
	return nil
}

// benchComm is the name the kernel gives a process started from bin
// (/proc/PID/comm): the file's name, cut to the 15 bytes of TASK_COMM_LEN,
// so that a copy under another name (SPOKI_BIN2=/tmp/old/spoki-start) is
// still recognised as the process whose RSS and CPU are read.
func benchComm(bin string) string {
	name := filepath.Base(bin)
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}
