package privs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Users `spoki run` switches to when started as root without --user.
const (
	// DefaultUser is the account an installation makes for spoki.
	DefaultUser = "spoki"
	// FallbackUser is taken when there is no DefaultUser account.
	FallbackUser = "nobody"
)

// ErrPrivilegesLeft is returned by Drop when a thread still holds
// a capability, another uid, or no NoNewPrivs after the drop (a kernel or
// runtime that did not apply a change everywhere). The caller should stop:
// the process is not in the state it promised.
var ErrPrivilegesLeft = errors.New("privs: privileges left after drop")

// User is an account the process runs as.
type User struct {
	// Name is the account name ("" if the uid has no passwd entry).
	Name string
	// UID and GID are the uid and primary gid.
	UID, GID int
}

// LookupUser returns the uid and primary gid of the user name (a name or a
// numeric uid), for Drop and for handing the log directory over
// before the switch.
func LookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("privs: look up user %s: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return 0, 0, fmt.Errorf("privs: look up user %s: %w", name, err)
		}
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, fmt.Errorf("privs: user %s: uid %q: %w", name, u.Uid, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, fmt.Errorf("privs: user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}

// RunAs returns the user to become once the TUN and routes are up, for
// the --user value name:
//
//   - name, if given; only root can switch, so an unprivileged process
//     (file capabilities, systemd's User= with ambient CAP_NET_ADMIN)
//     accepts only itself;
//   - started as root without a name, DefaultUser if that account exists,
//     else FallbackUser: uid 0 is kept only when asked for (name "root");
//   - started unprivileged without a name, the user it already is.
//
// It is called before anything is set up, so that a bad --user leaves
// nothing behind.
func RunAs(name string) (User, error) {
	self := User{UID: os.Geteuid(), GID: os.Getegid()}
	if u, err := user.LookupId(strconv.Itoa(self.UID)); err == nil {
		self.Name = u.Username
	}
	if name == "" {
		if self.UID != 0 {
			return self, nil
		}
		name = DefaultUser
		if _, _, err := LookupUser(name); err != nil {
			name = FallbackUser
		}
	}
	uid, gid, err := LookupUser(name)
	if err != nil {
		return User{}, err
	}
	u := User{Name: name, UID: uid, GID: gid}
	if self.UID != 0 && (u.UID != self.UID || u.GID != self.GID) {
		return User{}, fmt.Errorf("privs: cannot become user %s (uid %d): spoki runs as uid %d, and only root switches users; start it as root, or drop --user", name, uid, self.UID)
	}
	return u, nil
}

// Dropped says what Drop left.
type Dropped struct {
	// User is who the process runs as now.
	User User
	// Bounding is the capability bounding set that could not be emptied:
	// an unprivileged start without CAP_SETPCAP cannot drop from it. With
	// no capability in any other set and NoNewPrivs it grants nothing (it
	// only limits what an exec could gain, and NoNewPrivs forbids gains).
	Bounding uint64
}

// Drop is called once the TUN device and its routes are up: from
// then on the process runs as u, with u's primary group and no
// supplementary groups, and holds no capability in any set (effective,
// permitted, inheritable, ambient, and bounding when it may change it),
// with NoNewPrivs set, so that neither an exec nor anything else gives one
// back. Nothing needs a capability later: the routes go with the device
// when its last queue closes (Device.Close).
//
// Capabilities, credentials and NoNewPrivs belong to each thread, and a Go
// program has many threads whose number changes behind its back; every
// change is therefore made on all threads at once through libcap's psx,
// which works with and without cgo (syscall.AllThreadsSyscall refuses to
// run under cgo). Threads made later inherit the dropped state.
//
// On error the process may be part-way; the caller should exit.
func Drop(u User) (Dropped, error) {
	d := Dropped{User: u}
	switchUser := u.UID != os.Geteuid() || u.GID != os.Getegid()
	lastCap, err := lastCapability()
	if err != nil {
		return d, err
	}
	own, err := ReadCredentials(-1)
	if err != nil {
		return d, err
	}
	// The bounding set first: dropping from it needs CAP_SETPCAP, which
	// goes away with the uid and the permitted set below.
	if own[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		for c := 0; c <= lastCap; c++ {
			in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
			if err != nil {
				return d, fmt.Errorf("privs: drop privileges: read bounding capability %d: %w", c, err)
			}
			if in == 0 {
				continue
			}
			if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				return d, fmt.Errorf("privs: drop privileges: drop bounding capability %d: %w", c, err)
			}
		}
	} else {
		d.Bounding = own[0].Bounding
	}
	if err := allThreads6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: a kernel before 4.3 has no ambient set to clear.
		return d, fmt.Errorf("privs: drop privileges: clear ambient capabilities: %w", err)
	}
	if switchUser || own[0].Effective&(1<<unix.CAP_SETGID) != 0 {
		// Groups before the uid: changing them needs CAP_SETGID, which the
		// setuid below takes away. Staying uid 0 (--user root) clears
		// them too: a root shell's groups are not the telescope's.
		if err := allThreads(unix.SYS_SETGROUPS, 0, 0, 0); err != nil {
			return d, fmt.Errorf("privs: drop privileges: clear groups: %w", err)
		}
	}
	if switchUser {
		// Leaving uid 0 without PR_SET_KEEPCAPS also empties the
		// permitted and effective sets.
		if err := allThreads(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); err != nil {
			return d, fmt.Errorf("privs: drop privileges: set gid %d: %w", u.GID, err)
		}
		if err := allThreads(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); err != nil {
			return d, fmt.Errorf("privs: drop privileges: set uid %d: %w", u.UID, err)
		}
	}
	// Every set empty, whoever the process is now: staying uid 0 (--user
	// root) or an unprivileged start keeps its capabilities otherwise, and
	// the inheritable set survives a setuid.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	err = allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if err != nil {
		return d, fmt.Errorf("privs: drop privileges: clear capabilities: %w", err)
	}
	if err := allThreads6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return d, fmt.Errorf("privs: drop privileges: no new privileges: %w", err)
	}
	return d, checkThreads(u.UID, d.Bounding)
}

// allThreads runs a three-argument system call on every thread.
func allThreads(trap, a1, a2, a3 uintptr) error {
	if _, _, errno := psx.Syscall3(trap, a1, a2, a3); errno != 0 {
		return errno
	}
	return nil
}

// allThreads6 runs a six-argument system call on every thread.
func allThreads6(trap, a1, a2, a3, a4, a5 uintptr) error {
	if _, _, errno := psx.Syscall6(trap, a1, a2, a3, a4, a5, 0); errno != 0 {
		return errno
	}
	return nil
}

// lastCapability returns the highest capability number the kernel knows.
func lastCapability() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("privs: drop privileges: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("privs: drop privileges: cap_last_cap %q: %w", b, err)
	}
	return n, nil
}

// ThreadCredentials is what /proc says of one thread's privileges.
type ThreadCredentials struct {
	// TID is the thread id.
	TID int
	// UID and GID are the real, effective, saved and filesystem ids.
	UID, GID [4]int
	// Inheritable, Permitted, Effective, Bounding and Ambient are the
	// capability sets as bit masks (bit n is capability n).
	Inheritable, Permitted, Effective, Bounding, Ambient uint64
	// NoNewPrivs is the thread's no_new_privs flag.
	NoNewPrivs bool
}

// ReadCredentials reads the credentials of every thread of process pid
// (0 for this process) from /proc/PID/task/*/status; pid -1 reads the
// calling thread alone.
func ReadCredentials(pid int) ([]ThreadCredentials, error) {
	if pid == -1 {
		c, err := readStatus("/proc/thread-self/status")
		if err != nil {
			return nil, fmt.Errorf("privs: read credentials: %w", err)
		}
		c.TID = unix.Gettid()
		return []ThreadCredentials{c}, nil
	}
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("privs: read credentials: %w", err)
	}
	var out []ThreadCredentials
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := readStatus(filepath.Join(dir, e.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return nil, err
		}
		c.TID = tid
		out = append(out, c)
	}
	return out, nil
}

// readStatus parses the Uid, Gid and Cap* lines of a status file.
func readStatus(path string) (ThreadCredentials, error) {
	var c ThreadCredentials
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var dst *uint64
		switch key {
		case "Uid", "Gid":
			ids := &c.UID
			if key == "Gid" {
				ids = &c.GID
			}
			for i, s := range strings.Fields(val) {
				if i < len(ids) {
					ids[i], _ = strconv.Atoi(s)
				}
			}
			continue
		case "NoNewPrivs":
			c.NoNewPrivs = val == "1"
			continue
		case "CapInh":
			dst = &c.Inheritable
		case "CapPrm":
			dst = &c.Permitted
		case "CapEff":
			dst = &c.Effective
		case "CapBnd":
			dst = &c.Bounding
		case "CapAmb":
			dst = &c.Ambient
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(val, 16, 64); err != nil {
			return c, fmt.Errorf("privs: read credentials: %s: %s %q: %w", path, key, val, err)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("privs: read credentials: %s: %w", path, err)
	}
	return c, nil
}

// checkThreads verifies that every thread runs as uid, holds no
// capability (a bounding set of at most bounding), and has NoNewPrivs.
func checkThreads(uid int, bounding uint64) error {
	threads, err := ReadCredentials(0)
	if err != nil {
		return err
	}
	for _, c := range threads {
		if c.Permitted|c.Effective|c.Inheritable|c.Ambient|(c.Bounding&^bounding) != 0 || !c.NoNewPrivs {
			return fmt.Errorf("%w: thread %d: permitted %#x effective %#x bounding %#x inheritable %#x ambient %#x no_new_privs %v",
				ErrPrivilegesLeft, c.TID, c.Permitted, c.Effective, c.Bounding, c.Inheritable, c.Ambient, c.NoNewPrivs)
		}
		if c.UID != [4]int{uid, uid, uid, uid} {
			return fmt.Errorf("%w: thread %d: uids %v, want %d", ErrPrivilegesLeft, c.TID, c.UID, uid)
		}
	}
	return nil
}
