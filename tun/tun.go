// Package tun opens the TUN device the telescope prefixes are routed to, and
// adds and removes those routes. It is the only package that talks to the
// kernel's network configuration: the netstack gets plain file descriptors.
// Dropping privileges once the device and routes are up is package privs's
// job.
package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults for Config.
const (
	// DefaultName is the TUN device name when Config.Name is empty.
	DefaultName = "spoki0"
	// DefaultMTU matches an Ethernet upstream: a telescope only ever sees
	// packets that crossed one.
	DefaultMTU = 1500
	// DefaultTxQueueLen is the kernel queue in front of each TUN queue. It is
	// the only buffer between the kernel and the netstack (fdbased runs one
	// inline processor per fd), so it sets how much of a burst is absorbed
	// before the kernel drops; the kernel default of 500 is far too short for
	// a flood.
	DefaultTxQueueLen = 10000
)

// ErrExists is returned when a link of the requested name already exists.
// Opening it anyway would silently attach to another process's multi-queue
// device, so the caller must pick another name.
var ErrExists = errors.New("tun: device already exists")

// Config says which device to create.
type Config struct {
	// Name of the device; DefaultName if empty.
	Name string
	// Queues is the number of multi-queue file descriptors; 1 if zero.
	Queues int
	// MTU of the device; DefaultMTU if zero.
	MTU int
	// TxQueueLen of the device; DefaultTxQueueLen if zero.
	TxQueueLen int
	// Prefixes are routed to the device unless NoRoute is set.
	Prefixes []netip.Prefix
	// NoRoute leaves routing to the operator.
	NoRoute bool
}

// Device is an open multi-queue TUN device with its routes.
type Device struct {
	name   string
	mtu    int
	fds    []int
	link   netlink.Link
	routes []*netlink.Route

	closeOnce sync.Once
	closeErr  error
}

// Open creates the device, raises its transmit queue, silences IPv6 router
// solicitations, brings it up and adds a route for every prefix. On any
// error everything done so far is undone.
func Open(cfg Config) (_ *Device, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Queues <= 0 {
		cfg.Queues = 1
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.TxQueueLen == 0 {
		cfg.TxQueueLen = DefaultTxQueueLen
	}
	if len(cfg.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: name %q longer than %d bytes", cfg.Name, unix.IFNAMSIZ-1)
	}
	if _, lerr := netlink.LinkByName(cfg.Name); lerr == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, cfg.Name)
	}

	d := &Device{name: cfg.Name, mtu: cfg.MTU}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	for i := 0; i < cfg.Queues; i++ {
		fd, err := openQueue(cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("tun: open %s queue %d: %w", cfg.Name, i, err)
		}
		d.fds = append(d.fds, fd)
	}
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("tun: find %s: %w", cfg.Name, err)
	}
	d.link = link
	// Before the link is up: no link-local address means no router
	// solicitations, DAD or MLD reports leaking into the telescope's logs.
	for _, kv := range [][2]string{{"addr_gen_mode", "1"}, {"router_solicitations", "0"}, {"accept_ra", "0"}} {
		if err := writeSysctl("/proc/sys/net/ipv6/conf/"+cfg.Name+"/"+kv[0], kv[1]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tun: ipv6 %s on %s: %w", kv[0], cfg.Name, err)
		}
	}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return nil, fmt.Errorf("tun: set mtu %d on %s: %w", cfg.MTU, cfg.Name, err)
	}
	if err := netlink.LinkSetTxQLen(link, cfg.TxQueueLen); err != nil {
		return nil, fmt.Errorf("tun: set txqueuelen %d on %s: %w", cfg.TxQueueLen, cfg.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun: set %s up: %w", cfg.Name, err)
	}
	if cfg.NoRoute {
		return d, nil
	}
	for _, p := range cfg.Prefixes {
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       prefixToIPNet(p.Masked()),
			Scope:     netlink.SCOPE_LINK,
		}
		if err := netlink.RouteAdd(r); err != nil {
			return nil, fmt.Errorf("tun: add route %s dev %s: %w", p, cfg.Name, err)
		}
		d.routes = append(d.routes, r)
	}
	return d, nil
}

// openQueue opens one queue of the multi-queue device and returns a raw fd
// that the caller owns. water wraps the fd in an *os.File registered with
// Go's poller; Fd() would switch it to blocking mode, so the fd is
// duplicated through SyscallConn and the original closed (the duplicate
// keeps the queue attached).
func openQueue(name string) (int, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: true},
	})
	if err != nil {
		return -1, err
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return -1, fmt.Errorf("unexpected water device type %T", ifce.ReadWriteCloser)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return -1, err
	}
	dup := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) { dup, dupErr = unix.Dup(int(fd)) }); err != nil {
		f.Close()
		return -1, err
	}
	f.Close()
	if dupErr != nil {
		return -1, fmt.Errorf("dup: %w", dupErr)
	}
	unix.CloseOnExec(dup)
	return dup, nil
}

// Name returns the device name.
func (d *Device) Name() string { return d.name }

// MTU returns the device MTU.
func (d *Device) MTU() int { return d.mtu }

// FDs returns the queue file descriptors, one per queue. They stay owned by
// the Device and are closed by Close.
func (d *Device) FDs() []int { return d.fds }

// Close closes every queue; the kernel then removes the (non-persistent)
// device, and with it every route through it. That needs no privilege, so
// Close works after privs.Drop. Only if the device outlives its queues
// (another process attached one) are the routes removed through netlink,
// which needs CAP_NET_ADMIN. It is safe to call more than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		for _, fd := range d.fds {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, fmt.Errorf("tun: close fd %d: %w", fd, err))
			}
		}
		if len(d.routes) > 0 && d.link != nil && d.linkExists() {
			for _, r := range d.routes {
				if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("tun: delete route %s: %w", r.Dst, err))
				}
			}
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// linkExists reports whether the device is still there after its queues
// closed (the kernel unregisters it on the last close, before close
// returns).
func (d *Device) linkExists() bool {
	l, err := netlink.LinkByIndex(d.link.Attrs().Index)
	return err == nil && l.Attrs().Name == d.name
}

// Stats reads the kernel's counters of the device: TX dropped is what the
// kernel could not queue for the netstack (the overload signal).
func (d *Device) Stats() (rxPackets, txPackets, txDropped uint64, err error) {
	l, err := netlink.LinkByName(d.name)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("tun: stats %s: %w", d.name, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return 0, 0, 0, nil
	}
	return s.RxPackets, s.TxPackets, s.TxDropped, nil
}

func writeSysctl(path, value string) error {
	return os.WriteFile(path, []byte(value), 0)
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	addr := p.Addr()
	bits := 32
	if addr.Is6() {
		bits = 128
	}
	return &net.IPNet{IP: addr.AsSlice(), Mask: netMask(p.Bits(), bits)}
}

func netMask(ones, bits int) []byte {
	m := make([]byte, bits/8)
	for i := 0; i < ones; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// ParsePrefix parses a telescope prefix and rejects host bits and prefixes
// that would swallow a whole address family by mistake.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	if p.Bits() < 8 || (p.Addr().Is6() && p.Bits() < 16) {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: shorter than /%s", s, strconv.Itoa(map[bool]int{true: 16, false: 8}[p.Addr().Is6()]))
	}
	return p, nil
}
