package tun

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNewNetns runs the test body in a fresh network namespace on a locked
// thread, so the device and routes it creates are invisible to the host
// and vanish with the namespace.
func inNewNetns(t *testing.T, body func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TUN tests need root (CAP_NET_ADMIN) and CI=true")
		}
		t.Skip("TUN tests need root (CAP_NET_ADMIN)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked: it dies with the goroutine instead of
		// returning to the pool in the test namespace.
		orig, err := netns.Get()
		if err != nil {
			t.Errorf("get netns: %v", err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		body()
	}()
	<-done
}

func TestOpenRoutesAndClose(t *testing.T) {
	inNewNetns(t, func() {
		b := make([]byte, 3)
		rand.Read(b)
		name := "spkt" + hex.EncodeToString(b)
		p4 := netip.MustParsePrefix("198.51.100.0/24")
		p6 := netip.MustParsePrefix("2001:db8:5b0::/48")
		d, err := Open(Config{Name: name, Queues: 2, Prefixes: []netip.Prefix{p4, p6}})
		if err != nil {
			t.Errorf("Open: %v", err)
			return
		}
		if len(d.FDs()) != 2 {
			t.Errorf("fds = %d, want 2", len(d.FDs()))
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Errorf("link: %v", err)
			d.Close()
			return
		}
		if q := l.Attrs().TxQLen; q < DefaultTxQueueLen {
			t.Errorf("txqueuelen = %d, want >= %d", q, DefaultTxQueueLen)
		}
		if l.Attrs().OperState != netlink.OperUp && l.Attrs().Flags&1 == 0 {
			t.Errorf("link not up")
		}
		if v, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/router_solicitations"); strings.TrimSpace(string(v)) != "0" {
			t.Errorf("router_solicitations = %q, want 0", v)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		if len(addrs) != 0 {
			t.Errorf("TUN has addresses %v, want none (no link-local, nothing from the prefixes)", addrs)
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			routes, _ := netlink.RouteList(l, fam)
			if len(routes) != 1 {
				t.Errorf("family %d: %d routes on the TUN, want 1: %v", fam, len(routes), routes)
			}
		}
		if _, err := Open(Config{Name: name}); err == nil {
			t.Errorf("second Open of %s succeeded, want ErrExists", name)
		}
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("TUN %s still exists after Close", name)
		}
	})
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"198.51.100.0/24", true},
		{"10.0.0.0/8", true},
		{"2001:db8:5b0::/48", true},
		{"198.51.100.1/24", false},
		{"0.0.0.0/0", false},
		{"10.0.0.0/7", false},
		{"nonsense", false},
		{"::/0", false},
	} {
		_, err := ParsePrefix(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePrefix(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
