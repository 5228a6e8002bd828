package tun

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

// KeptCapabilities is the capability mask DropPrivileges leaves: only
// CAP_NET_ADMIN, which Device.Close needs to remove the routes at exit.
const KeptCapabilities = uint64(1) << unix.CAP_NET_ADMIN

// ErrPrivilegesLeft is returned by DropPrivileges when a thread still holds
// more than KeptCapabilities, or another uid, after the drop (a kernel or
// runtime that did not apply a change everywhere). The caller should stop:
// the process is not in the state it promised.
var ErrPrivilegesLeft = errors.New("tun: privileges left after drop")

// LookupUser returns the uid and primary gid of the user name (a name or a
// numeric uid), for DropPrivileges and for handing the log directory over
// before the switch.
func LookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("tun: look up user %s: %w", name, err)
		}
		if u, err = user.LookupId(name); err != nil {
			return 0, 0, fmt.Errorf("tun: look up user %s: %w", name, err)
		}
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, fmt.Errorf("tun: user %s: uid %q: %w", name, u.Uid, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, fmt.Errorf("tun: user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}

// DropPrivileges is called once the TUN device and its routes are up: from
// then on the process keeps no capability but CAP_NET_ADMIN, in every set
// (bounding, permitted, effective; inheritable and ambient are emptied, as
// spoki executes nothing), and, if user is not empty, runs as that user with
// its primary group and no supplementary groups.
//
// Capabilities and credentials belong to each thread, and a Go program has
// many threads whose number changes behind its back; every change is
// therefore made on all threads at once through libcap's psx, which works
// with and without cgo (syscall.AllThreadsSyscall refuses to run under
// cgo). Already holding less (a systemd unit with a capability bounding set
// and ambient CAP_NET_ADMIN) is fine: what is gone is not dropped twice.
//
// On error the process may be part-way; the caller should exit.
func DropPrivileges(userName string) error {
	uid, gid := -1, -1
	if userName != "" {
		var err error
		if uid, gid, err = LookupUser(userName); err != nil {
			return err
		}
		if uid == os.Getuid() && gid == os.Getgid() {
			// Already that user: a setuid would need CAP_SETUID for nothing.
			uid, gid = -1, -1
		}
	}
	lastCap, err := lastCapability()
	if err != nil {
		return err
	}
	// Keep the permitted set across setuid: without it the kernel clears
	// every capability when the uids leave 0, CAP_NET_ADMIN included.
	if uid >= 0 {
		if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
			return fmt.Errorf("tun: drop privileges: keep capabilities: %w", err)
		}
	}
	// The bounding set first: dropping from it needs CAP_SETPCAP, which
	// goes away with the permitted set below.
	for c := 0; c <= lastCap; c++ {
		if c == unix.CAP_NET_ADMIN {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return fmt.Errorf("tun: drop privileges: read bounding capability %d: %w", c, err)
		}
		if in == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("tun: drop privileges: drop bounding capability %d: %w", c, err)
		}
	}
	if err := allThreads6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: a kernel before 4.3 has no ambient set to clear.
		return fmt.Errorf("tun: drop privileges: clear ambient capabilities: %w", err)
	}
	if uid >= 0 {
		// Groups before the uid: changing them needs CAP_SETGID, which the
		// setuid below takes away from the effective set.
		if err := allThreads(unix.SYS_SETGROUPS, 0, 0, 0); err != nil {
			return fmt.Errorf("tun: drop privileges: clear groups: %w", err)
		}
		if err := allThreads(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); err != nil {
			return fmt.Errorf("tun: drop privileges: set gid %d: %w", gid, err)
		}
		if err := allThreads(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); err != nil {
			return fmt.Errorf("tun: drop privileges: set uid %d: %w", uid, err)
		}
	}
	// Permitted and effective become CAP_NET_ADMIN alone: after a setuid the
	// effective set is empty and CAP_NET_ADMIN is raised again from the
	// permitted set that KEEPCAPS preserved.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Permitted = uint32(KeptCapabilities)
	data[0].Effective = uint32(KeptCapabilities)
	err = allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if err != nil {
		return fmt.Errorf("tun: drop privileges: set capabilities: %w", err)
	}
	if uid >= 0 {
		// Back to the default, so that nothing later keeps capabilities
		// through a uid change by accident.
		if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
			return fmt.Errorf("tun: drop privileges: reset keep capabilities: %w", err)
		}
	}
	return checkThreads(uid)
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
		return 0, fmt.Errorf("tun: drop privileges: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("tun: drop privileges: cap_last_cap %q: %w", b, err)
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
}

// ReadCredentials reads the credentials of every thread of process pid
// (0 for this process) from /proc/PID/task/*/status.
func ReadCredentials(pid int) ([]ThreadCredentials, error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tun: read credentials: %w", err)
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
			return c, fmt.Errorf("tun: read credentials: %s: %s %q: %w", path, key, val, err)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("tun: read credentials: %s: %w", path, err)
	}
	return c, nil
}

// checkThreads verifies that every thread holds at most KeptCapabilities,
// nothing inheritable or ambient, and (uid >= 0) runs as uid.
func checkThreads(uid int) error {
	threads, err := ReadCredentials(0)
	if err != nil {
		return err
	}
	for _, c := range threads {
		extra := (c.Permitted | c.Effective | c.Bounding) &^ KeptCapabilities
		if extra != 0 || c.Inheritable != 0 || c.Ambient != 0 {
			return fmt.Errorf("%w: thread %d: permitted %#x effective %#x bounding %#x inheritable %#x ambient %#x",
				ErrPrivilegesLeft, c.TID, c.Permitted, c.Effective, c.Bounding, c.Inheritable, c.Ambient)
		}
		if uid >= 0 && c.UID != [4]int{uid, uid, uid, uid} {
			return fmt.Errorf("%w: thread %d: uids %v, want %d", ErrPrivilegesLeft, c.TID, c.UID, uid)
		}
	}
	return nil
}
