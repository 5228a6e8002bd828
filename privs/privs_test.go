package privs

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/spoki-telescope/spoki/tun"
)

// privsHelperEnv makes the test binary a helper process: it opens a TUN
// device with a route, drops privileges to the user named by the variable
// ("-" for none), reports, and closes the device when its stdin says so.
const privsHelperEnv = "SPOKI_PRIVS_HELPER"

// TestMain runs the privilege helper when the test binary is re-executed as
// one: capabilities and uids are process-wide, so dropping them inside the
// test process would spoil every later test.
func TestMain(m *testing.M) {
	if u, ok := os.LookupEnv(privsHelperEnv); ok {
		os.Exit(privsHelper(u))
	}
	os.Exit(m.Run())
}

// privsHelper is the helper process's body. It prints "dropped" once the
// privileges are down, then waits for a line on stdin, closes the device
// (with no capability left: the kernel removes the device and its route
// with the last queue), checks that both are gone and prints "closed".
func privsHelper(userName string) int {
	if userName == "-" {
		userName = ""
	}
	// Threads locked by sleeping goroutines: the drop must reach threads
	// that are busy elsewhere, not only the one calling it.
	for range 4 {
		go func() {
			runtime.LockOSThread()
			select {}
		}()
	}
	u, err := RunAs(userName)
	if err != nil {
		fmt.Println("error: run as:", err)
		return 1
	}
	dev, err := tun.Open(tun.Config{Name: "privs0", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		fmt.Println("error: open:", err)
		return 1
	}
	if _, err := Drop(u); err != nil {
		fmt.Println("error: drop:", err)
		return 1
	}
	fmt.Println("dropped")
	bufio.NewReader(os.Stdin).ReadString('\n')
	if err := dev.Close(); err != nil {
		fmt.Println("error: close:", err)
		return 1
	}
	if _, err := netlink.LinkByName("privs0"); err == nil {
		fmt.Println("error: privs0 still exists after Close")
		return 1
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		fmt.Println("error: list routes:", err)
		return 1
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "192.0.2.0/24" {
			fmt.Println("error: route 192.0.2.0/24 still there after Close")
			return 1
		}
	}
	fmt.Println("closed")
	return 0
}

func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("privilege tests need root and CI=true")
		}
		t.Skip("privilege tests need root (they drop root's capabilities)")
	}
	nobodyUID, _, err := LookupUser("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	defaultUID := nobodyUID
	if uid, _, err := LookupUser(DefaultUser); err == nil {
		defaultUID = uid
	}
	tests := []struct {
		name    string
		user    string
		wantUID int
	}{
		{"default user", "", defaultUID},
		{"stay root when asked", "root", 0},
		{"switch to nobody", "nobody", nobodyUID},
		{"numeric uid", fmt.Sprint(nobodyUID), nobodyUID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.user
			if env == "" {
				env = "-"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), privsHelperEnv+"="+env)
			// A network namespace of its own: the helper's device and route
			// never touch the host. It starts with supplementary groups, as
			// from a root shell, which the drop must clear.
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET,
				Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{4, 100}}}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close()
				cmd.Process.Kill()
				cmd.Wait()
			})
			lines := make(chan string, 4)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			if got := privsNextLine(t, lines); got != "dropped" {
				t.Fatalf("helper said %q, want dropped", got)
			}

			threads, err := ReadCredentials(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if len(threads) < 5 {
				t.Errorf("helper has %d threads, want at least 5 (4 locked ones)", len(threads))
			}
			for _, c := range threads {
				for _, set := range []struct {
					name string
					got  uint64
				}{
					{"CapEff", c.Effective}, {"CapPrm", c.Permitted}, {"CapBnd", c.Bounding},
					{"CapInh", c.Inheritable}, {"CapAmb", c.Ambient},
				} {
					if set.got != 0 {
						t.Errorf("thread %d: %s = %016x, want none", c.TID, set.name, set.got)
					}
				}
				if !c.NoNewPrivs {
					t.Errorf("thread %d: NoNewPrivs 0, want 1", c.TID)
				}
				want := [4]int{tc.wantUID, tc.wantUID, tc.wantUID, tc.wantUID}
				if c.UID != want {
					t.Errorf("thread %d: Uid = %v, want %v", c.TID, c.UID, want)
				}
				if g := privsGroups(t, cmd.Process.Pid, c.TID); g != "" {
					t.Errorf("thread %d: Groups = %q, want none", c.TID, g)
				}
			}

			// No capability is needed at exit: closing the queues removes
			// the device and its route.
			io.WriteString(stdin, "close\n")
			if got := privsNextLine(t, lines); got != "closed" {
				t.Errorf("helper said %q after close, want closed", got)
			}
		})
	}
}

// TestRunAsUnprivileged checks that a process that is not root accepts
// only itself as --user, and stays itself without one.
func TestRunAsUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root switches; the refusal is for everyone else, which this
		// process is not. The helper below runs as nobody.
		nobodyUID, nobodyGID, err := LookupUser("nobody")
		if err != nil {
			t.Skipf("no user nobody: %v", err)
		}
		// The test binary's own directory is private to root: run a copy.
		dir, err := os.MkdirTemp("", "spoki-privs-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		bin, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(dir, "privs.test")
		if err := os.WriteFile(exe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestRunAsUnprivileged$", "-test.v")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(nobodyUID), Gid: uint32(nobodyGID)}}
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Errorf("as nobody: %v\n%s", err, out)
		}
		return
	}
	u, err := RunAs("")
	if err != nil || u.UID != os.Geteuid() {
		t.Errorf("RunAs(\"\") = %+v, %v; want uid %d", u, err, os.Geteuid())
	}
	if _, err := RunAs("root"); err == nil || !strings.Contains(err.Error(), "only root") {
		t.Errorf("RunAs(root) as uid %d = %v, want a refusal", os.Geteuid(), err)
	}
}

// privsGroups returns the supplementary groups of thread tid of pid, as
// /proc shows them.
func privsGroups(t *testing.T, pid, tid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Groups:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Groups line for thread %d", tid)
	return ""
}

// privsNextLine returns the helper's next output line, failing after 10 s.
func privsNextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("helper exited without a word")
		}
		return strings.TrimSpace(l)
	case <-time.After(10 * time.Second):
		t.Fatal("helper silent for 10s")
	}
	return ""
}
