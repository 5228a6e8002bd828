package test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/privs"
)

// privsUser is an account the telescope is expected to run as.
type privsUser struct {
	name     string
	uid, gid int
}

// privsLookup returns the account name, or fails the test.
func privsLookup(t *testing.T, name string) privsUser {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		labUnavailable(t, fmt.Sprintf("no user %s: %v", name, err))
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return privsUser{name, uid, gid}
}

// privsDefaultUser is who `spoki run` started as root without --user must
// become: spoki if that account exists, else nobody.
func privsDefaultUser(t *testing.T) privsUser {
	t.Helper()
	if _, err := user.Lookup("spoki"); err == nil {
		return privsLookup(t, "spoki")
	}
	return privsLookup(t, "nobody")
}

// privsStatus parses /proc/PID/status into its fields.
func privsStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read spoki's status: %v", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// privsCheckProcess asserts that every thread of pid runs as want with no
// capability in any set and NoNewPrivs, as /proc shows it.
func privsCheckProcess(t *testing.T, pid int, want privsUser) {
	t.Helper()
	fields := privsStatus(t, pid)
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"} {
		if fields[k] != "0000000000000000" {
			t.Errorf("%s = %s, want 0000000000000000 (no capability)", k, fields[k])
		}
	}
	if fields["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", fields["NoNewPrivs"])
	}
	wantIDs := func(id int) string { return strings.Repeat(strconv.Itoa(id)+"\t", 3) + strconv.Itoa(id) }
	if fields["Uid"] != wantIDs(want.uid) || fields["Gid"] != wantIDs(want.gid) {
		t.Errorf("Uid %q Gid %q, want %d and %d (%s) in every slot", fields["Uid"], fields["Gid"], want.uid, want.gid, want.name)
	}
	if fields["Groups"] != "" {
		t.Errorf("Groups = %q, want none", fields["Groups"])
	}
	// Every thread: capabilities and credentials are per thread.
	threads, err := privs.ReadCredentials(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range threads {
		if c.Effective|c.Permitted|c.Bounding|c.Ambient|c.Inheritable != 0 || !c.NoNewPrivs {
			t.Errorf("thread %d: %+v, want no capability and NoNewPrivs", c.TID, c)
		}
		if c.UID != [4]int{want.uid, want.uid, want.uid, want.uid} {
			t.Errorf("thread %d: uids %v, want %d", c.TID, c.UID, want.uid)
		}
	}
	t.Logf("spoki (pid %d, %d threads): uid %s, CapEff %s, CapBnd %s, NoNewPrivs %s",
		pid, len(threads), fields["Uid"], fields["CapEff"], fields["CapBnd"], fields["NoNewPrivs"])
}

// privsCheckServes asserts that the telescope answers a SYN (SYN-ACK with
// a valid cookie) and an HTTP request from the scanner namespace.
func privsCheckServes(t *testing.T, l *lab.Lab) {
	t.Helper()
	res, code := e2eProbeSYN(t, l, []netip.AddrPort{netip.MustParseAddrPort("198.51.100.9:2323")}, 2*time.Second)
	if code != 0 || len(res) != 1 || res[0].synacks == 0 || !res[0].ackOK {
		t.Errorf("SYN probe: exit %d, results %+v, want one SYN-ACK with a valid cookie", code, res)
	}
	out, _, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5", "http://198.51.100.80/")
	if code != 0 || out == "" {
		t.Errorf("curl: exit %d, page %q, want a page", code, out)
	}
}

// privsCheckFiles asserts that the log directory and every file in it
// belong to want, with modes 0750 and 0640.
func privsCheckFiles(t *testing.T, dir string, want privsUser) {
	t.Helper()
	check := func(path string, mode os.FileMode) {
		st, err := os.Lstat(path)
		if err != nil {
			t.Error(err)
			return
		}
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != want.uid || int(sys.Gid) != want.gid || st.Mode().Perm() != mode {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d (%s) %o", filepath.Base(path), sys.Uid, sys.Gid, st.Mode().Perm(), want.uid, want.gid, want.name, mode)
		}
	}
	check(dir, 0o750)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		check(filepath.Join(dir, e.Name()), 0o640)
	}
	if len(entries) < 3 {
		t.Errorf("%d files in the log dir, want the raw, reply and event logs", len(entries))
	}
}

// TestRunDropsPrivileges starts `spoki run` as root and reads its
// credentials from /proc once it is ready: without --user it runs as spoki
// (or nobody) and with `--user root` as uid 0, and either way with no
// capability in any set and NoNewPrivs. It still answers a SYN and an HTTP
// request, writes its files (handed to that user, 0640 in a 0750
// directory it created, also a root-owned file of an earlier run, which
// the unprivileged maintenance compresses), and at SIGTERM exits 0 with
// the TUN and its routes gone, although nothing may remove a route any
// more: the kernel removes them with the last queue.
func TestRunDropsPrivileges(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want func(*testing.T) privsUser
		warn bool
		// earlier says an earlier run as root left the log directory
		// (0755) and a file in it; otherwise spoki creates the directory.
		earlier bool
	}{
		{"default user", nil, privsDefaultUser, false, true},
		{"root when asked", []string{"--user", "root"}, func(t *testing.T) privsUser { return privsUser{"root", 0, 0} }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := e2eNewLab(t, lab.Config{}, "curl")
			want := tc.want(t)
			// A log directory under t.TempDir, whose path (0700, root's)
			// the unprivileged telescope cannot traverse: the writer works
			// through the handle opened before the drop.
			logDir := filepath.Join(t.TempDir(), "logs")
			const oldLog = e2eTag + ".events.20260101-00.jsonl"
			if tc.earlier {
				if err := os.Mkdir(logDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(logDir, oldLog), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			tel := e2eStartTelescope(t, l, append([]string{"--log-dir", logDir}, tc.args...)...)
			tel.logDir = logDir

			privsCheckProcess(t, tel.proc.Pid(), want)
			privsCheckServes(t, l)
			out := tel.stop(t)
			if !strings.Contains(out, "privileges dropped") {
				t.Errorf("no 'privileges dropped' line:\n%s", out)
			}
			if got := strings.Contains(out, "running as root"); got != tc.warn {
				t.Errorf("'running as root' warning logged: %v, want %v:\n%s", got, tc.warn, out)
			}
			e2eCheckTUNGone(t, l)

			if len(e2eRawEvents(t, logDir)) == 0 {
				t.Errorf("no events written by the unprivileged telescope")
			}
			if _, err := os.Stat(filepath.Join(logDir, oldLog+".gz")); tc.earlier && err != nil {
				t.Errorf("the earlier run's %s was not compressed: %v", oldLog, err)
			}
			privsCheckFiles(t, logDir, want)
		})
	}
}

// TestRunUnprivilegedStart starts `spoki run` as nobody with only what it
// needs for set-up: CAP_NET_ADMIN, CAP_NET_RAW and CAP_SETPCAP as ambient
// capabilities (what deploy/spoki.service gives it), or CAP_NET_ADMIN
// alone from file capabilities on the binary. It stays nobody, keeps no
// capability (the bounding set too where CAP_SETPCAP allows), answers
// (through the raw reply sockets opened before the drop, or without
// CAP_NET_RAW through the TUN), and exits 0 with the TUN and its routes
// gone.
func TestRunUnprivilegedStart(t *testing.T) {
	labRequireTools(t, "setpriv", "setcap", "unshare", "mknod")
	nobody := privsLookup(t, "nobody")
	for _, tc := range []struct {
		name string
		// setpriv's options, before the binary.
		setpriv func(bin string) []string
		// fileCaps is set with setcap on a copy of the binary.
		fileCaps string
		// bounding is the bounding set left: without CAP_SETPCAP spoki
		// cannot empty it (NoNewPrivs makes it grant nothing).
		bounding bool
		// replies is how the ready line says the replies leave.
		replies string
	}{
		{"ambient like systemd", func(string) []string {
			return []string{"--inh-caps=-all,+net_admin,+net_raw,+setpcap", "--ambient-caps=+net_admin,+net_raw,+setpcap",
				"--bounding-set=-all,+net_admin,+net_raw,+setpcap", "--no-new-privs"}
		}, "", false, "raw"},
		{"file capabilities", func(string) []string { return []string{"--inh-caps=-all"} }, "cap_net_admin+ep", true, "tun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := e2eNewLab(t, lab.Config{}, "curl")
			// Everything nobody must reach: a directory open to it with
			// the binary and a log directory of its own (systemd's
			// StateDirectory).
			dir, err := os.MkdirTemp("", "spoki-unpriv-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(dir, "spoki")
			b, err := os.ReadFile(labSpokiBin(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.fileCaps != "" {
				if out, err := exec.Command("setcap", tc.fileCaps, bin).CombinedOutput(); err != nil {
					labUnavailable(t, fmt.Sprintf("setcap: %v: %s", err, out))
				}
			}
			logDir := filepath.Join(dir, "logs")
			if err := os.Mkdir(logDir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(logDir, nobody.uid, nobody.gid); err != nil {
				t.Fatal(err)
			}
			// /dev/net/tun may be root's alone (0600 here; distributions
			// make it 0666): a private mount namespace gets a 0666 node of
			// its own over it.
			devDir := filepath.Join(dir, "dev")
			if err := os.Mkdir(devDir, 0o755); err != nil {
				t.Fatal(err)
			}
			const script = `set -e
mount -t tmpfs -o mode=0755 spoki-test "$0"
mknod -m 0666 "$0/tun" c 10 200
mount --bind "$0/tun" /dev/net/tun
exec setpriv "$@"`
			args := []string{"-m", "--propagation", "private", "sh", "-c", script, devDir,
				"--reuid=" + strconv.Itoa(nobody.uid), "--regid=" + strconv.Itoa(nobody.gid), "--clear-groups"}
			args = append(append(append(args, tc.setpriv(bin)...), bin), e2eRunArgs(l, logDir)...)
			p, err := l.Start(l.Telescope, "unshare", args...)
			if err != nil {
				t.Fatalf("start spoki: %v", err)
			}
			t.Cleanup(func() { _ = p.Stop() })
			if err := p.WaitForLine(lab.IsReadyLine, "ready", e2eReadyTimeout); err != nil {
				t.Fatalf("spoki not ready: %v", err)
			}
			(&e2eTelescope{proc: p}).checkReplies(t, tc.replies)
			fields := privsStatus(t, p.Pid())
			if tc.bounding {
				// Not emptied, but nothing else is left to use it.
				for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
					if fields[k] != "0000000000000000" {
						t.Errorf("%s = %s, want none", k, fields[k])
					}
				}
				if fields["NoNewPrivs"] != "1" || fields["Uid"] != strings.Repeat(strconv.Itoa(nobody.uid)+"\t", 3)+strconv.Itoa(nobody.uid) {
					t.Errorf("NoNewPrivs %q Uid %q, want 1 and nobody", fields["NoNewPrivs"], fields["Uid"])
				}
				if !strings.Contains(p.Output(), "bounding_kept=") {
					t.Errorf("the kept bounding set is not logged:\n%s", p.Output())
				}
			} else {
				privsCheckProcess(t, p.Pid(), nobody)
			}
			privsCheckServes(t, l)
			if err := p.Stop(); err != nil {
				t.Errorf("spoki run after SIGTERM: %v, want exit status 0", err)
			}
			e2eCheckTUNGone(t, l)
			if len(e2eRawEvents(t, logDir)) == 0 {
				t.Errorf("no events written")
			}
			privsCheckFiles(t, logDir, nobody)
		})
	}
}
