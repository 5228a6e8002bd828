package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The receive-side host setting against livelock (README "Host settings",
// docs/benchmarks.md#livelock).
//
// A veth without NAPI hands every frame to the receiving CPU's backlog
// (netif_rx); the forwarding into the TUN then runs as a softirq, on top of
// whatever that CPU runs, and also inside the responder's own syscalls
// (every local_bh_enable of its TUN write runs the pending softirq). Under a
// blast that softirq takes the whole core and the responder starves: the
// receive work forwards SYNs the TUN must drop because nobody reads them.
//
// Threaded NAPI turns that receive work into a kernel thread
// ("napi/DEV-ID") that the scheduler shares fairly with the responder, and
// the NAPI ring in front of it (256 frames on a veth) drops what the thread
// cannot take at the sender, before any work is spent on it: the drop a
// real NIC makes in hardware when its ring is full.

// Legacy ethtool ioctls (linux/ethtool.h): one feature at a time, without
// the string-set lookup the feature-bit interface needs.
const (
	ethtoolSTSO = 0x1f // ETHTOOL_STSO
	ethtoolSGRO = 0x2c // ETHTOOL_SGRO
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd, data uint32
}

// ifreqData is struct ifreq with its union used as a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolSet sets one legacy ethtool flag (GRO, TSO) of iface in namespace
// ns, as `ethtool -K IFACE gro on` does.
func ethtoolSet(ns, iface string, cmd uint32, on bool) error {
	if len(iface) >= unix.IFNAMSIZ {
		return fmt.Errorf("lab: interface name %q too long", iface)
	}
	return InNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("lab: ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		v := ethtoolValue{cmd: cmd}
		if on {
			v.data = 1
		}
		var ifr ifreqData
		copy(ifr.name[:], iface)
		ifr.data = unsafe.Pointer(&v)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("lab: ethtool cmd %#x on %s in %s: %w", cmd, iface, ns, errno)
		}
		return nil
	})
}

// SetThreadedNAPI switches the threaded receive of the telescope host's
// uplink (TelescopeIface) on or off (Config.ThreadedNAPI sets it on at New).
// On, the uplink gets a NAPI instance run by a kernel thread:
//
//   - GRO on the uplink: a veth has NAPI only with GRO on (or an XDP
//     program attached);
//   - TSO off on the scanner's end: a veth passes frames from a sender with
//     TSO on to the NAPI path only when they are eligible for GRO lists,
//     so with TSO on they would still go through the backlog (and no real
//     NIC receives TSO frames from the wire);
//   - /sys/class/net/UPLINK/threaded = 1.
//
// Off restores the kernel's defaults (threaded 0, GRO off, TSO on): frames
// go through the receiving CPU's backlog again.
func (l *Lab) SetThreadedNAPI(ctx context.Context, on bool) error {
	v := "0"
	if on {
		if err := ethtoolSet(l.Telescope, l.TelescopeIface, ethtoolSGRO, true); err != nil {
			return err
		}
		if err := ethtoolSet(l.Scanner, l.ScannerIface, ethtoolSTSO, false); err != nil {
			return err
		}
		v = "1"
	}
	// Through `ip netns exec`, which mounts a sysfs of the namespace:
	// this process's /sys shows the devices of its own namespace only.
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	p := filepath.Join("/sys/class/net", l.TelescopeIface, "threaded")
	// Written only when it differs: a device without NAPI refuses any write.
	script := fmt.Sprintf(`[ "$(cat %[1]s)" = %[2]s ] || echo %[2]s > %[1]s`, p, v)
	if out, err := l.Command(ctx, l.Telescope, "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("lab: threaded NAPI %s on %s: %w: %s", v, l.TelescopeIface, err, strings.TrimSpace(string(out)))
	}
	if on {
		return nil
	}
	if err := ethtoolSet(l.Telescope, l.TelescopeIface, ethtoolSGRO, false); err != nil {
		return err
	}
	return ethtoolSet(l.Scanner, l.ScannerIface, ethtoolSTSO, true)
}

// UplinkNAPIThreads returns the process ids of the kernel threads that run
// the uplink's NAPI (Config.ThreadedNAPI), found by their name
// "napi/UPLINK-ID".
func (l *Lab) UplinkNAPIThreads() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	prefix := "napi/" + l.TelescopeIface + "-"
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(string(comm)), prefix) {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, errors.New("lab: no NAPI thread for " + l.TelescopeIface + " (Config.ThreadedNAPI not set?)")
	}
	return pids, nil
}

// PinUplinkNAPI restricts the uplink's NAPI threads to the given CPUs; no
// CPUs means every CPU again.
func (l *Lab) PinUplinkNAPI(cpus ...int) error {
	pids, err := l.UplinkNAPIThreads()
	if err != nil {
		return err
	}
	var set unix.CPUSet
	if len(cpus) == 0 {
		n, err := onlineCPUs()
		if err != nil {
			return err
		}
		for c := range n {
			set.Set(c)
		}
	}
	for _, c := range cpus {
		set.Set(c)
	}
	for _, pid := range pids {
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			return fmt.Errorf("lab: pin NAPI thread %d to %v: %w", pid, cpus, err)
		}
	}
	return nil
}

// onlineCPUs is the number of CPUs the kernel lists as possible for
// affinity masks (the highest online CPU plus one).
func onlineCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		_, hi, found := strings.Cut(r, "-")
		if !found {
			hi = r
		}
		v, err := strconv.Atoi(hi)
		if err != nil {
			return 0, fmt.Errorf("lab: parse %q: %w", b, err)
		}
		n = max(n, v+1)
	}
	return n, nil
}
