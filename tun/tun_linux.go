package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var _ Device = (*Linux)(nil)

// Linux is an open multi-queue TUN device with its routes: the Device
// Open returns.
type Linux struct {
	name   string
	mtu    int
	fds    []int
	queues []Queue
	link   netlink.Link
	routes []*netlink.Route
	// raw are the reply sockets (Config.RawReplies); rawErr says why
	// they are missing when they were asked for.
	raw    *rawSockets
	rawErr error

	closeOnce sync.Once
	closeErr  error
}

// Open creates the device, raises its transmit queue, silences IPv6 router
// solicitations, brings it up and adds a route for every prefix. On any
// error everything done so far is undone.
func Open(cfg Config) (_ *Linux, err error) {
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

	d := &Linux{name: cfg.Name, mtu: cfg.MTU}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if cfg.RawReplies {
		// Without CAP_NET_RAW the queues write to the TUN instead.
		d.raw, d.rawErr = openRawSockets()
	}
	for i := 0; i < cfg.Queues; i++ {
		fd, err := openQueue(cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("tun: open %s queue %d: %w", cfg.Name, i, err)
		}
		// Non-blocking: a Read takes what is queued, then waits in
		// poll (linuxQueue).
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("tun: open %s queue %d: %w", cfg.Name, i, err)
		}
		d.fds = append(d.fds, fd) // closed by Close from here on
		q, err := newLinuxQueue(fd, d.raw)
		if err != nil {
			return nil, fmt.Errorf("tun: open %s queue %d: %w", cfg.Name, i, err)
		}
		d.queues = append(d.queues, q)
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

// linuxQueue is one queue of a Linux device. A TUN file reads one packet
// per system call (it has no batch call without a virtio-net header), so
// Read takes every packet already queued, up to its batch, and waits only
// when there is none. Write sends the batch in sendmmsg calls on the raw
// sockets when the Device has them, and otherwise writes each packet to
// the TUN.
//
// Read waits in poll(2) on the queue and an eventfd, in its own thread,
// as the echo baseline of the benchmarks does, not in Go's netpoller: the
// queue's file is not registered with the netpoller at all. Under a flood
// a reader empties its queue thousands of times a second; parked on the
// netpoller, each time costs a goroutine switch, a thread looking for work
// (findRunnable) and an epoll_wait, and every packet arriving on a
// registered file wakes the thread blocked in epoll_wait whether or not a
// goroutine waits for it. A reader blocked in poll holds its thread, not
// a P (the runtime hands the P on while the call blocks) and burns no CPU
// while idle; SetReadDeadline and Close wake it through the eventfd.
// Before it blocks, Read yields once (runtime.Gosched) and looks again.
type linuxQueue struct {
	fd   int
	wake int       // eventfd: a write wakes a Read blocked in poll
	raw  *rawBatch // nil: packets are written to the TUN

	// fdmu keeps fd open while a Read or a TUN Write uses it (read
	// locks); Close takes it to close fd once no one does, so that no
	// call meets the number reused by another file.
	fdmu   sync.RWMutex
	closed atomic.Bool
	// deadline is the read deadline in Unix ns; 0 is none.
	deadline atomic.Int64
	wakeMu   sync.Mutex // serialises wake-ups with closing the eventfd
	wakeOpen bool       // +checklocks:wakeMu
	pfd      [2]unix.PollFd
}

func newLinuxQueue(fd int, raw *rawSockets) (*linuxQueue, error) {
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	q := &linuxQueue{fd: fd, wake: wake, wakeOpen: true}
	q.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	q.pfd[1] = unix.PollFd{Fd: int32(wake), Events: unix.POLLIN}
	if raw != nil {
		q.raw = newRawBatch(raw)
	}
	return q, nil
}

func (q *linuxQueue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(bufs) > MaxBatch {
		bufs = bufs[:MaxBatch]
	}
	q.fdmu.RLock()
	defer q.fdmu.RUnlock()
	yielded := false
	for {
		if q.closed.Load() {
			return 0, os.ErrClosed
		}
		n, err := q.readQueued(bufs, sizes, offset)
		if n > 0 {
			// An error after some packets is left for the next
			// Read, which meets it again.
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		if !yielded {
			// Before the thread blocks: the goroutines the caller
			// made runnable (a record writer it handed a batch)
			// wait on this P, which a thread blocked in poll keeps
			// until the runtime takes it away. Yielding runs them
			// here first, and what arrives meanwhile is read
			// without a poll.
			yielded = true
			runtime.Gosched()
			continue
		}
		yielded = false
		timeout := -1
		if d := q.deadline.Load(); d != 0 {
			left := d - time.Now().UnixNano()
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = int(min((left+int64(time.Millisecond)-1)/int64(time.Millisecond), 1<<30))
		}
		q.pfd[0].Revents, q.pfd[1].Revents = 0, 0
		if _, err := unix.Poll(q.pfd[:], timeout); err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("tun: poll: %w", err)
		}
		if q.pfd[1].Revents != 0 {
			// Drained before closed and the deadline are looked at
			// again: a wake-up after this one wakes the next poll.
			var b [8]byte
			unix.Read(q.wake, b[:])
		}
	}
}

// readQueued reads packets until the queue is empty or the batch full.
func (q *linuxQueue) readQueued(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		k, err := unix.Read(q.fd, bufs[n][offset:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		}
		sizes[n] = k
		n++
	}
	return n, nil
}

// wakeUp wakes a Read blocked in poll, which then looks at the deadline
// and closed again.
func (q *linuxQueue) wakeUp() {
	q.wakeMu.Lock()
	if q.wakeOpen {
		var one [8]byte // the eventfd counter's increment, in host order
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(q.wake, one[:])
	}
	q.wakeMu.Unlock()
}

func (q *linuxQueue) Write(bufs [][]byte, offset int) (int, error) {
	if q.raw != nil {
		return q.raw.write(bufs, offset)
	}
	q.fdmu.RLock()
	defer q.fdmu.RUnlock()
	if q.closed.Load() {
		return 0, os.ErrClosed
	}
	for i, b := range bufs {
		for {
			_, err := unix.Write(q.fd, b[offset:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return i, &os.PathError{Op: "write", Path: "tun", Err: err}
			}
			break
		}
	}
	return len(bufs), nil
}

func (q *linuxQueue) SetReadDeadline(t time.Time) error {
	if q.closed.Load() {
		return os.ErrClosed
	}
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	q.deadline.Store(d)
	q.wakeUp()
	return nil
}

// close wakes a blocked Read for good and closes the queue once no Read
// or Write uses it.
func (q *linuxQueue) close() error {
	q.closed.Store(true)
	q.wakeUp()
	q.fdmu.Lock()
	err := unix.Close(q.fd)
	q.fdmu.Unlock()
	q.wakeMu.Lock()
	q.wakeOpen = false
	unix.Close(q.wake)
	q.wakeMu.Unlock()
	return err
}

// Queues returns one Queue per multi-queue file.
func (d *Linux) Queues() []Queue { return d.queues }

// Name returns the device name.
func (d *Linux) Name() string { return d.name }

// MTU returns the device MTU.
func (d *Linux) MTU() int { return d.mtu }

// BatchSize is MaxBatch: a Read returns what the queue holds, up to it.
func (d *Linux) BatchSize() int { return MaxBatch }

// RawReplies reports whether the queues send on raw sockets (nil) or why
// they write to the TUN instead (Config.RawReplies unset, or the sockets
// could not be opened: no CAP_NET_RAW).
func (d *Linux) RawReplies() error {
	if d.raw != nil {
		return nil
	}
	if d.rawErr != nil {
		return d.rawErr
	}
	return errors.New("tun: raw replies not asked for")
}

// FDs returns the queue file descriptors, one per queue, for code that
// bypasses the Device (the echo baseline of the benchmarks). They stay
// owned by the Device, are non-blocking, and are closed by Close.
func (d *Linux) FDs() []int { return d.fds }

// Close closes every queue; the kernel then removes the (non-persistent)
// device, and with it every route through it. That needs no privilege, so
// Close works after privs.Drop. Only if the device outlives its queues
// (another process attached one) are the routes removed through netlink,
// which needs CAP_NET_ADMIN. It is safe to call more than once.
func (d *Linux) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		for i, fd := range d.fds {
			var err error
			if i < len(d.queues) {
				err = d.queues[i].(*linuxQueue).close()
			} else {
				err = unix.Close(fd)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("tun: close fd %d: %w", fd, err))
			}
		}
		if d.raw != nil {
			if err := d.raw.close(); err != nil {
				errs = append(errs, fmt.Errorf("tun: close raw sockets: %w", err))
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
func (d *Linux) linkExists() bool {
	l, err := netlink.LinkByIndex(d.link.Attrs().Index)
	return err == nil && l.Attrs().Name == d.name
}

// Stats reads the kernel's counters of the device: TX dropped is what the
// kernel could not queue for the netstack (the overload signal).
func (d *Linux) Stats() (rxPackets, txPackets, txDropped uint64, err error) {
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
