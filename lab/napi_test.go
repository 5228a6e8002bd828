package lab

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/internal/syncbuf"

	"golang.org/x/sys/unix"
)

// napiRuntime reads the time a thread has run, in ns (/proc/PID/schedstat).
func napiRuntime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		t.Fatalf("schedstat of NAPI thread %d: %v", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("schedstat of %d: %q", pid, b)
	}
	ns, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		t.Fatalf("schedstat of %d: %v", pid, err)
	}
	return ns
}

func threadedSysfs(t *testing.T, l *Lab) string {
	t.Helper()
	out, err := l.Command(context.Background(), l.Telescope, "cat", "/sys/class/net/"+l.TelescopeIface+"/threaded").Output()
	if err != nil {
		t.Fatalf("read threaded: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestThreadedNAPI checks that Config.ThreadedNAPI puts the uplink's receive
// work in a NAPI kernel thread (the frames of a flood make that thread run),
// that PinUplinkNAPI pins it and that SetThreadedNAPI(false) restores the
// backlog path.
func TestThreadedNAPI(t *testing.T) {
	l := newLab(t, Config{Sink: true, ThreadedNAPI: true})
	if got := threadedSysfs(t, l); got != "1" {
		t.Fatalf("threaded = %q, want 1", got)
	}
	pids, err := l.UplinkNAPIThreads()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.PinUplinkNAPI(0); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &set); err != nil {
			t.Fatal(err)
		}
		if set.Count() != 1 || !set.IsSet(0) {
			t.Errorf("NAPI thread %d: affinity of %d CPUs, CPU0 %v; want CPU0 only", pid, set.Count(), set.IsSet(0))
		}
	}
	if err := l.PinUplinkNAPI(); err != nil {
		t.Fatal(err)
	}

	flood := func() FloodResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := linkPackets(t, l.Telescope, l.TelescopeIface)
		res, err := Flood(ctx, FloodConfig{
			Iface: l.ScannerIface, Prefix: Prefix4, Kind: FloodSYN, Rate: 20000,
			Count: 5000, Duration: 5 * time.Second, Netns: l.Scanner,
		})
		if err != nil {
			t.Fatalf("Flood: %v", err)
		}
		if got := linkPackets(t, l.Telescope, l.TelescopeIface) - before; got < res.Sent {
			t.Errorf("telescope received %d packets, want at least %d (%v)", got, res.Sent, res)
		}
		return res
	}
	var ran0 uint64
	for _, pid := range pids {
		ran0 += napiRuntime(t, pid)
	}
	res := flood()
	var ran1 uint64
	for _, pid := range pids {
		ran1 += napiRuntime(t, pid)
	}
	t.Logf("%v; NAPI thread(s) %v ran %d µs", res, pids, (ran1-ran0)/1000)
	if ran1 <= ran0 {
		t.Errorf("NAPI thread(s) %v did not run during the flood: the frames took the backlog", pids)
	}

	if err := l.SetThreadedNAPI(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := threadedSysfs(t, l); got != "0" {
		t.Errorf("after SetThreadedNAPI(false): threaded = %q, want 0", got)
	}
	if p, err := l.UplinkNAPIThreads(); err == nil {
		t.Errorf("after SetThreadedNAPI(false): NAPI threads %v remain", p)
	}
	flood()
}

var upNAPIRE = regexp.MustCompile(`threaded NAPI on (\S+): receive work in kernel thread\(s\) \[([0-9 ]+)\]`)

// TestUpThreadedNAPI checks that `spoki lab up`'s ThreadedNAPI gives the
// lab's uplink a NAPI thread while the lab is up, and that it is gone with
// the lab.
func TestUpThreadedNAPI(t *testing.T) {
	requireRoot(t)
	bin := spokiBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- Up(ctx, UpConfig{Bin: bin, Out: &out, ThreadedNAPI: true}) }()
	var m []string
	for m == nil {
		select {
		case err := <-done:
			t.Fatalf("Up returned early: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if strings.Contains(out.String(), "is up") {
			m = upNAPIRE.FindStringSubmatch(out.String())
			if m == nil {
				cancel()
				<-done
				t.Fatalf("no threaded NAPI line in Up's output:\n%s", out.String())
			}
		}
	}
	var pids []int
	for _, f := range strings.Fields(m[2]) {
		pid, _ := strconv.Atoi(f)
		comm, err := os.ReadFile("/proc/" + f + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "napi/"+m[1]+"-") {
			t.Errorf("thread %s: comm %q (%v), want napi/%s-*", f, comm, err, m[1])
		}
		pids = append(pids, pid)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Up: %v\n%s", err, out.String())
	}
	// The kernel removes a deleted namespace's devices, and their threads,
	// asynchronously (the netns cleanup work).
	for _, pid := range pids {
		deadline := time.Now().Add(10 * time.Second)
		for {
			comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if err != nil || !strings.HasPrefix(string(comm), "napi/"+m[1]+"-") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("NAPI thread %d still there 10 s after Up returned", pid)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
