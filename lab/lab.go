package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Addresses of the lab. They come from the documentation prefixes so that
// nothing in a lab can ever be confused with a real host.
var (
	// Prefix4 and Prefix6 are the default telescope prefixes that the
	// telescope host routes to spoki's TUN.
	Prefix4 = netip.MustParsePrefix("198.51.100.0/24")
	Prefix6 = netip.MustParsePrefix("2001:db8:5b0::/48")

	// TelescopeAddr4 and TelescopeAddr6 are the telescope host's end of the
	// scanner link: the scanner's default gateways.
	TelescopeAddr4 = netip.MustParseAddr("192.0.2.1")
	TelescopeAddr6 = netip.MustParseAddr("2001:db8:1::1")
	// ScannerAddr4 and ScannerAddr6 are the scanner's addresses, the source
	// of every probe that is not spoofed.
	ScannerAddr4 = netip.MustParseAddr("192.0.2.2")
	ScannerAddr6 = netip.MustParseAddr("2001:db8:1::2")

	// TelescopeSinkAddr4/6 and SinkAddr4/6 are the two ends of the sink
	// link (Config.Sink).
	TelescopeSinkAddr4 = netip.MustParseAddr("192.0.2.129")
	TelescopeSinkAddr6 = netip.MustParseAddr("2001:db8:2::1")
	SinkAddr4          = netip.MustParseAddr("192.0.2.130")
	SinkAddr6          = netip.MustParseAddr("2001:db8:2::2")

	// FloodSrc4 and FloodSrc6 are the spoofed source ranges of floods. The
	// telescope host routes them to the sink, so replies to them never
	// reach the scanner.
	FloodSrc4 = netip.MustParsePrefix("203.0.113.0/24")
	FloodSrc6 = netip.MustParsePrefix("2001:db8:3::/64")
)

// maxNameLen keeps every derived interface name within IFNAMSIZ-1 (15):
// the longest is the TUN name, Name + "-tun".
const maxNameLen = 11

var validName = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// setupTimeout bounds each iproute2 command and the wait for usable
// addresses, so that a wedged kernel fails the set-up instead of hanging it.
const setupTimeout = 10 * time.Second

// Config says what lab to build. The zero value is a two-namespace lab with
// a random name.
type Config struct {
	// Name is the unique prefix of every namespace and interface, at most 11
	// letters, digits or underscores. Empty means "spk" plus 6 random hex
	// digits.
	Name string
	// Sink adds the sink namespace that swallows replies to spoofed flood
	// sources.
	Sink bool
	// ThreadedNAPI runs the telescope host's receive work on its uplink in
	// a NAPI kernel thread instead of a softirq (GRO and threaded NAPI on
	// the uplink, TSO off on the scanner's end), so that a blast can no
	// longer starve the responder on the core that receives it: the host
	// setting of README "Host settings" (docs/benchmarks.md#livelock).
	// Pin the thread with Lab.PinUplinkNAPI.
	ThreadedNAPI bool
	// Output, when set, receives a copy of every line that processes
	// started with Lab.Start print, prefixed with the program's name. Tests
	// pass a t.Log writer; the demo leaves it nil.
	Output io.Writer
}

// Lab is a set of network namespaces built by New. Its fields are read-only.
// Its methods may be called concurrently.
type Lab struct {
	// Name is the unique prefix of everything the lab created.
	Name string
	// Telescope, Scanner and Sink are the namespace names (Sink is empty
	// without Config.Sink).
	Telescope, Scanner, Sink string
	// ScannerIface is the scanner's end of the veth pair, the interface a
	// flooder writes to; TelescopeIface is the telescope host's end, whose
	// MAC address (TelescopeMAC) is the flooder's destination.
	ScannerIface, TelescopeIface string
	TelescopeMAC                 net.HardwareAddr
	// TelescopeSinkIface and SinkIface are the two ends of the sink link
	// (empty without Config.Sink).
	TelescopeSinkIface, SinkIface string
	// TUN is a TUN name for `spoki run --tun` that is unique to this lab.
	TUN string

	output       io.Writer
	threadedNAPI bool

	mu      sync.Mutex
	closed  bool
	created []string // namespaces to delete, in creation order
	procs   []*Process
}

// New builds the lab described by cfg and waits until its addresses are
// usable. On error it removes whatever it had created. The caller must call
// Close. It needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root).
func New(ctx context.Context, cfg Config) (*Lab, error) {
	name := cfg.Name
	if name == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("lab: random name: %w", err)
		}
		name = "spk" + hex.EncodeToString(b[:])
	}
	if len(name) > maxNameLen || !validName.MatchString(name) {
		return nil, fmt.Errorf("%w: %q (want 1 to %d letters, digits or underscores)", ErrBadName, name, maxNameLen)
	}
	l := &Lab{
		Name:           name,
		Telescope:      name + "-tel",
		Scanner:        name + "-scan",
		ScannerIface:   name + "-s0",
		TelescopeIface: name + "-t0",
		TUN:            name + "-tun",
		output:         cfg.Output,
		threadedNAPI:   cfg.ThreadedNAPI,
	}
	if cfg.Sink {
		l.Sink = name + "-sink"
		l.TelescopeSinkIface = name + "-t1"
		l.SinkIface = name + "-k0"
	}
	if err := l.setup(ctx); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// setup runs the iproute2 commands and sysctl writes that build the lab.
func (l *Lab) setup(ctx context.Context) error {
	nss := []string{l.Telescope, l.Scanner}
	if l.Sink != "" {
		nss = append(nss, l.Sink)
	}
	for _, ns := range nss {
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return err
		}
		l.mu.Lock()
		l.created = append(l.created, ns)
		l.mu.Unlock()
		// Defaults first, so that the veths created next inherit them:
		// no DAD (addresses usable at once) and no reverse-path filter
		// (spoofed flood sources must be forwarded).
		if err := writeSysctls(ns, map[string]string{
			"net/ipv4/conf/all/rp_filter":      "0",
			"net/ipv4/conf/default/rp_filter":  "0",
			"net/ipv6/conf/all/accept_dad":     "0",
			"net/ipv6/conf/default/accept_dad": "0",
		}); err != nil {
			return err
		}
	}
	if err := writeSysctls(l.Telescope, map[string]string{
		"net/ipv4/ip_forward":          "1",
		"net/ipv6/conf/all/forwarding": "1",
	}); err != nil {
		return err
	}

	if err := l.link(ctx, l.Telescope, l.TelescopeIface, l.Scanner, l.ScannerIface,
		TelescopeAddr4, TelescopeAddr6, ScannerAddr4, ScannerAddr6); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", l.Scanner, "route", "add", "default", "via", TelescopeAddr4.String()},
		{"-n", l.Scanner, "-6", "route", "add", "default", "via", TelescopeAddr6.String()},
	}
	if l.Sink != "" {
		if err := l.link(ctx, l.Telescope, l.TelescopeSinkIface, l.Sink, l.SinkIface,
			TelescopeSinkAddr4, TelescopeSinkAddr6, SinkAddr4, SinkAddr6); err != nil {
			return err
		}
		steps = append(steps,
			[]string{"-n", l.Telescope, "route", "add", FloodSrc4.String(), "via", SinkAddr4.String()},
			[]string{"-n", l.Telescope, "-6", "route", "add", FloodSrc6.String(), "via", SinkAddr6.String()},
			// The sink does not forward, so it drops the replies anyway;
			// the blackhole routes make that explicit and cheap.
			[]string{"-n", l.Sink, "route", "add", "blackhole", FloodSrc4.String()},
			[]string{"-n", l.Sink, "-6", "route", "add", "blackhole", FloodSrc6.String()},
		)
	}
	for _, args := range steps {
		if err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	mac, err := l.ifaceMAC(ctx, l.Telescope, l.TelescopeIface)
	if err != nil {
		return err
	}
	l.TelescopeMAC = mac
	if l.threadedNAPI {
		if err := l.SetThreadedNAPI(ctx, true); err != nil {
			return err
		}
	}
	return l.waitUsable(ctx, nss)
}

// link creates a veth pair between two namespaces, addresses and raises
// both ends, and pins each end's neighbour entry for the other, so that a
// flooder finds its destination MAC without resolving it first.
func (l *Lab) link(ctx context.Context, nsA, ifA, nsB, ifB string, a4, a6, b4, b6 netip.Addr) error {
	if err := ipCmd(ctx, "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, end := range []struct {
		ns, ifc string
		a4, a6  netip.Addr
	}{{nsA, ifA, a4, a6}, {nsB, ifB, b4, b6}} {
		if err := writeSysctls(end.ns, map[string]string{
			"net/ipv4/conf/" + end.ifc + "/rp_filter":  "0",
			"net/ipv6/conf/" + end.ifc + "/accept_dad": "0",
		}); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"-n", end.ns, "addr", "add", end.a4.String() + "/25", "dev", end.ifc},
			{"-n", end.ns, "addr", "add", end.a6.String() + "/64", "dev", end.ifc, "nodad"},
			{"-n", end.ns, "link", "set", "lo", "up"},
			{"-n", end.ns, "link", "set", end.ifc, "up"},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return err
			}
		}
	}
	macA, err := l.ifaceMAC(ctx, nsA, ifA)
	if err != nil {
		return err
	}
	macB, err := l.ifaceMAC(ctx, nsB, ifB)
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", nsB, "neigh", "replace", a4.String(), "lladdr", macA.String(), "dev", ifB, "nud", "permanent"},
		{"-n", nsB, "neigh", "replace", a6.String(), "lladdr", macA.String(), "dev", ifB, "nud", "permanent"},
		{"-n", nsA, "neigh", "replace", b4.String(), "lladdr", macB.String(), "dev", ifA, "nud", "permanent"},
		{"-n", nsA, "neigh", "replace", b6.String(), "lladdr", macB.String(), "dev", ifA, "nud", "permanent"},
	} {
		if err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// ifaceMAC reads an interface's MAC address with `ip -j link show`.
func (l *Lab) ifaceMAC(ctx context.Context, ns, ifc string) (net.HardwareAddr, error) {
	out, err := ipOutput(ctx, "-n", ns, "-j", "link", "show", "dev", ifc)
	if err != nil {
		return nil, err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return nil, fmt.Errorf("lab: parse link %s in %s: %w (%q)", ifc, ns, err, out)
	}
	mac, err := net.ParseMAC(links[0].Address)
	if err != nil {
		return nil, fmt.Errorf("lab: parse MAC of %s in %s: %w", ifc, ns, err)
	}
	return mac, nil
}

// waitUsable waits until no address is tentative and every veth is up, so
// that the first probe is not lost to DAD or a link still coming up.
func (l *Lab) waitUsable(ctx context.Context, nss []string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for {
		ready := true
		var last string
		for _, ns := range nss {
			out, err := ipOutput(ctx, "-n", ns, "-6", "addr", "show", "tentative")
			if err != nil {
				return err
			}
			if len(bytes.TrimSpace(out)) != 0 {
				ready, last = false, fmt.Sprintf("tentative addresses in %s: %s", ns, out)
				break
			}
			out, err = ipOutput(ctx, "-n", ns, "-o", "link", "show", "type", "veth")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if !strings.Contains(line, "state UP") {
					ready, last = false, fmt.Sprintf("link not up in %s: %s", ns, line)
				}
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: wait for usable addresses: %w (%s)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Command returns a command that runs name with args inside namespace ns
// (`ip netns exec`). It is killed when ctx is done.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts name with args in the background inside namespace ns and
// captures its standard error and output, line by line. Close stops every
// process still running, so a failed test never leaves one behind.
func (l *Lab) Start(ns, name string, args ...string) (*Process, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	var echo io.Writer
	if l.output != nil {
		echo = &prefixWriter{w: l.output, prefix: filepath.Base(name) + ": "}
	}
	p, err := startProcess(cmd, echo)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	return p, nil
}

// Close stops the processes started with Start (SIGTERM, then SIGKILL after
// a timeout) and deletes the namespaces, which removes their interfaces. It
// may be called more than once; calls after the first return nil. Exit
// statuses are not Close's business: callers that care call Process.Stop
// first.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, nss := l.procs, l.created
	l.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); errors.Is(err, ErrKilled) {
			errs = append(errs, fmt.Errorf("lab: stop %s: %w", procs[i].Name(), err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	for i := len(nss) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join("/run/netns", nss[i])); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := ipCmd(ctx, "netns", "del", nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Namespaces returns the names of the namespaces the lab created and has not
// deleted yet.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	return append([]string(nil), l.created...)
}

// ipCmd runs iproute2's ip with args, with the set-up timeout.
func ipCmd(ctx context.Context, args ...string) error {
	_, err := ipOutput(ctx, args...)
	return err
}

// ipOutput runs iproute2's ip and returns its standard output; a failure
// carries the command and ip's own message.
func ipOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// writeSysctls writes /proc/sys values inside namespace ns. It writes them
// in-process, so that the lab needs no sysctl binary.
func writeSysctls(ns string, kv map[string]string) error {
	return InNetns(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("lab: sysctl %s=%s in %s: %w", k, v, ns, err)
			}
		}
		return nil
	})
}

// prefixWriter copies lines to w with a prefix; Process writes it one whole
// line at a time.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

// Write implements io.Writer.
func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
