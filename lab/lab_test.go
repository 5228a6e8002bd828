package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireRoot skips a privileged test without root, except under CI=true,
// where a missing capability must fail rather than hide the test.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("network namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN), and CI=true")
	}
	t.Skip("network namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
}

// newLab builds a lab that is removed when the test ends, pass or fail.
func newLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	requireRoot(t)
	cfg.Output = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// testWriter logs process output through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// netnsList returns `ip netns list`'s names.
func netnsList(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	return names
}

// spokiBin returns $SPOKI_BIN or skips: the CLI tests run the real binary.
func spokiBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SPOKI_BIN")
	if bin == "" {
		t.Skip("set SPOKI_BIN to a built spoki binary (make build) to run the CLI tests")
	}
	return bin
}

func TestLabUpDown(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"two namespaces", Config{}},
		{"with sink", Config{Sink: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.cfg)
			want := []string{l.Telescope, l.Scanner}
			if tc.cfg.Sink {
				want = append(want, l.Sink)
			}
			listed := netnsList(t)
			for _, ns := range want {
				if !listed[ns] {
					t.Errorf("namespace %s not in ip netns list", ns)
				}
			}
			for _, link := range []struct{ ns, ifc string }{
				{l.Scanner, l.ScannerIface}, {l.Telescope, l.TelescopeIface},
				{l.Sink, l.SinkIface}, {l.Telescope, l.TelescopeSinkIface},
			} {
				if link.ifc == "" {
					continue
				}
				if out, err := exec.Command("ip", "-n", link.ns, "link", "show", "dev", link.ifc).CombinedOutput(); err != nil {
					t.Errorf("interface %s in %s: %v: %s", link.ifc, link.ns, err, out)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
			listed = netnsList(t)
			for _, ns := range want {
				if listed[ns] {
					t.Errorf("namespace %s still listed after Close", ns)
				}
			}
			if _, err := l.Start(l.Telescope, "true"); !errors.Is(err, ErrClosed) {
				t.Errorf("Start after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestNewBadName(t *testing.T) {
	for _, name := range []string{"waytoolongname", "bad-name", "a b"} {
		if _, err := New(context.Background(), Config{Name: name}); !errors.Is(err, ErrBadName) {
			t.Errorf("New(Name %q) = %v, want ErrBadName", name, err)
		}
	}
}

func TestRoutes(t *testing.T) {
	l := newLab(t, Config{Sink: true})
	tests := []struct {
		name, ns, dst, wantVia string
	}{
		{"scanner v4 via telescope", l.Scanner, "198.51.100.80", "via " + TelescopeAddr4.String()},
		{"scanner v6 via telescope", l.Scanner, "2001:db8:5b0::80", "via " + TelescopeAddr6.String()},
		{"telescope v4 flood source via sink", l.Telescope, "203.0.113.5", "via " + SinkAddr4.String()},
		{"telescope v6 flood source via sink", l.Telescope, "2001:db8:3::5", "via " + SinkAddr6.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("ip", "-n", tc.ns, "route", "get", tc.dst).CombinedOutput()
			if err != nil {
				t.Fatalf("ip route get %s: %v: %s", tc.dst, err, out)
			}
			if !strings.Contains(string(out), tc.wantVia) {
				t.Errorf("ip -n %s route get %s = %q, want %q", tc.ns, tc.dst, out, tc.wantVia)
			}
		})
	}
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/rp_filter",
		"net/ipv4/conf/" + l.TelescopeIface + "/rp_filter"} {
		var got []byte
		err := InNetns(l.Telescope, func() (err error) {
			got, err = os.ReadFile("/proc/sys/" + key)
			return err
		})
		want := "1"
		if strings.Contains(key, "rp_filter") {
			want = "0"
		}
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("telescope sysctl %s = %q, %v, want %s", key, got, err, want)
		}
	}
}

// listenIn opens a TCP listener inside namespace ns; the kernel there
// answers SYNs to it.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := InNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestProbeSYNKernelResponder(t *testing.T) {
	l := newLab(t, Config{})
	ln4 := listenIn(t, l.Telescope, "192.0.2.1:0")
	ln6 := listenIn(t, l.Telescope, "[2001:db8:1::1]:0")
	open4 := netip.MustParseAddrPort(ln4.Addr().String())
	open6 := netip.MustParseAddrPort(ln6.Addr().String())
	closed4 := netip.AddrPortFrom(TelescopeAddr4, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	results, err := ProbeSYN(ctx, SYNConfig{
		Targets: []netip.AddrPort{open4, open6, closed4},
		Wait:    500 * time.Millisecond,
		Netns:   l.Scanner,
		Seed:    3,
	})
	if err != nil {
		t.Fatalf("ProbeSYN: %v", err)
	}
	want := map[netip.AddrPort]int{open4: 1, open6: 1, closed4: 0}
	for _, r := range results {
		t.Log(r)
		if r.SYNACKs != want[r.Target] || r.AckOK != (want[r.Target] == 1) {
			t.Errorf("%v: synacks %d ack_ok %t, want %d %t", r.Target, r.SYNACKs, r.AckOK, want[r.Target], want[r.Target] == 1)
		}
		if wantSrc := ScannerAddr4; r.Target.Addr().Is4() && r.Source.Addr() != wantSrc {
			t.Errorf("%v: source %v, want %v", r.Target, r.Source, wantSrc)
		}
	}
}

func TestProcess(t *testing.T) {
	l := newLab(t, Config{})
	p, err := l.Start(l.Telescope, "sh", "-c", "echo starting; echo time=x level=INFO msg=ready; exec sleep 30")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := p.WaitForLine(IsReadyLine, "ready", 5*time.Second); err != nil {
		t.Fatalf("WaitForLine(ready): %v", err)
	}
	if err := p.WaitFor("never printed", 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitFor(never printed) = %v, want ErrTimeout", err)
	}
	start := time.Now()
	if err := p.Stop(); err == nil || errors.Is(err, ErrKilled) {
		t.Errorf("Stop of sleep = %v, want a termination-by-signal error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v, want SIGTERM to end sleep at once", d)
	}

	q, err := l.Start(l.Telescope, "sh", "-c", "echo bye; exit 3")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := q.WaitFor("ready", 5*time.Second); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bye") {
		t.Errorf("WaitFor on an exiting process = %v, want ErrExited with its output", err)
	}

	// Left running on purpose: Close must stop it.
	r, err := l.Start(l.Telescope, "sleep", "30")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-r.Done():
	default:
		t.Errorf("process %d still running after Close", r.Pid())
	}
}

// linkPackets returns an interface's received packet count.
func linkPackets(t *testing.T, ns, ifc string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "-s", "link", "show", "dev", ifc).Output()
	if err != nil {
		t.Fatalf("ip -s link show %s: %v", ifc, err)
	}
	var links []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j -s link: %v (%s)", err, out)
	}
	return links[0].Stats64.RX.Packets
}

func TestFloodReachesTelescope(t *testing.T) {
	l := newLab(t, Config{Sink: true})
	tests := []struct {
		name   string
		prefix netip.Prefix
		kind   FloodKind
		rate   int
	}{
		{"syn v4 full speed", Prefix4, FloodSYN, 0},
		{"ack v4 paced", Prefix4, FloodACK, 20000},
		{"syn v6", Prefix6, FloodSYN, 0},
	}
	const count = 2000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := linkPackets(t, l.Telescope, l.TelescopeIface)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := Flood(ctx, FloodConfig{
				Iface: l.ScannerIface, Prefix: tc.prefix, Kind: tc.kind, Rate: tc.rate,
				Count: count, Duration: 5 * time.Second, Netns: l.Scanner,
			})
			if err != nil {
				t.Fatalf("Flood: %v", err)
			}
			t.Log(res)
			if res.Sent+res.Refused != count {
				t.Errorf("sent %d + refused %d, want %d", res.Sent, res.Refused, count)
			}
			if tc.rate > 0 && res.Rate() > 1.5*float64(tc.rate) {
				t.Errorf("rate %.0f pps, want about %d", res.Rate(), tc.rate)
			}
			got := linkPackets(t, l.Telescope, l.TelescopeIface) - before
			if got < res.Sent {
				t.Errorf("telescope received %d packets, want at least %d", got, res.Sent)
			}
		})
	}
}

func TestFloodNeedsNeighbour(t *testing.T) {
	l := newLab(t, Config{})
	_, err := Flood(context.Background(), FloodConfig{
		Iface: l.ScannerIface, Prefix: netip.MustParsePrefix("192.0.2.0/25"), Count: 1, Netns: l.Scanner,
	})
	if !errors.Is(err, ErrNoNeighbour) {
		t.Errorf("Flood to an on-link prefix without DstMAC = %v, want ErrNoNeighbour", err)
	}
}

// serveIn serves HTTP on a listener inside ns and returns its address.
func serveIn(t *testing.T, ns, addr string, h http.Handler) string {
	t.Helper()
	ln := listenIn(t, ns, addr)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestProbeCLI(t *testing.T) {
	bin := spokiBin(t)
	l := newLab(t, Config{})
	ok := serveIn(t, l.Telescope, "[2001:db8:1::1]:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	reset := listenIn(t, l.Telescope, "192.0.2.1:0")
	go func() {
		for {
			c, err := reset.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 100)
				c.Read(buf)
				c.(*net.TCPConn).SetLinger(0) // close with RST, as the generic handler does
				c.Close()
			}()
		}
	}()
	echo := listenIn(t, l.Telescope, "192.0.2.1:0")
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.CopyN(c, c, 6); c.Close() }()
		}
	}()
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		want    string
	}{
		{"http ok v6", []string{"http", "http://" + ok + "/"}, false, "200 OK"},
		{"http reset", []string{"http", "http://" + reset.Addr().String() + "/"}, false, "sent request; connection reset"},
		{"http refused", []string{"http", "http://192.0.2.1:1/"}, true, "connect failed"},
		{"line echo", []string{"line", echo.Addr().String(), "root"}, false, `"root\r\n"`},
		{"syn", []string{"syn", "--target", reset.Addr().String(), "--wait", "300ms"}, false, "synacks=1 ack_ok=true"},
		{"syn closed port", []string{"syn", "--target", "192.0.2.1:1", "--wait", "300ms"}, true, "synacks=0"},
		{"flood", []string{"flood", "--iface", l.ScannerIface, "--prefix", Prefix4.String(), "--count", "1000", "--duration", "2s"}, false, "sent 1000 packets"},
		{"flood bad kind", []string{"flood", "--iface", l.ScannerIface, "--prefix", Prefix4.String(), "--kind", "fin"}, true, "flood kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := l.Command(ctx, l.Scanner, bin, append([]string{"probe"}, tc.args...)...).CombinedOutput()
			t.Logf("spoki probe %s:\n%s", strings.Join(tc.args, " "), out)
			if (err != nil) != tc.wantErr {
				t.Errorf("spoki probe %v error = %v, want error %t", tc.args, err, tc.wantErr)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("spoki probe %v output lacks %q", tc.args, tc.want)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end demo takes seconds; skipped with -short")
	}
	bin := spokiBin(t)
	requireRoot(t)
	var out strings.Builder
	err := Demo(context.Background(), DemoConfig{Bin: bin, Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("Demo: %v", err)
	}
}
