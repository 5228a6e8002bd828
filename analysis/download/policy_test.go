package download

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	pfx := netip.MustParsePrefix
	own := []netip.Addr{netip.MustParseAddr("8.8.4.4")}
	def := NewPolicy(nil, nil, []netip.Prefix{pfx("44.0.0.0/24")}, own)
	tests := []struct {
		name string
		p    *Policy
		addr string
		want string // "" for allowed, else a substring of the refusal
	}{
		{"public v4", def, "93.184.216.34", ""},
		{"public v6", def, "2606:2800:220:1::1", ""},
		{"loopback", def, "127.0.0.1", "127.0.0.0/8 (loopback)"},
		{"loopback high", def, "127.255.0.9", "loopback"},
		{"unspecified v4", def, "0.0.0.0", "0.0.0.0/8"},
		{"this network", def, "0.1.2.3", "0.0.0.0/8"},
		{"unspecified v6", def, "::", "::/128 (unspecified)"},
		{"loopback v6", def, "::1", "::1/128 (loopback)"},
		{"mapped loopback", def, "::ffff:127.0.0.1", "127.0.0.0/8 (loopback)"},
		{"mapped public", def, "::ffff:93.184.216.34", ""},
		{"compatible", def, "::127.0.0.1", "IPv4-compatible"},
		{"rfc1918 10", def, "10.1.2.3", "10.0.0.0/8 (private"},
		{"rfc1918 172", def, "172.31.255.1", "172.16.0.0/12"},
		{"rfc1918 192.168", def, "192.168.1.1", "192.168.0.0/16"},
		{"not rfc1918 172.32", def, "172.32.0.1", ""},
		{"cgnat", def, "100.64.0.1", "CGNAT"},
		{"cloud metadata", def, "169.254.169.254", "link-local"},
		{"link-local v6", def, "fe80::1", "fe80::/10"},
		{"link-local v6 with zone", def, "fe80::1%eth0", "fe80::/10"},
		{"ula", def, "fd00::1", "fc00::/7"},
		{"multicast v4", def, "239.1.2.3", "multicast"},
		{"multicast v6", def, "ff02::1", "multicast"},
		{"reserved", def, "240.0.0.1", "reserved"},
		{"broadcast", def, "255.255.255.255", "broadcast"},
		{"documentation v4", def, "192.0.2.7", "documentation"},
		{"documentation 198.51.100", def, "198.51.100.7", "documentation"},
		{"documentation 203.0.113", def, "203.0.113.7", "documentation"},
		{"documentation v6", def, "2001:db8::1", "documentation"},
		{"benchmarking", def, "198.19.0.1", "benchmarking"},
		{"nat64 of loopback", def, "64:ff9b::7f00:1", "embeds 127.0.0.1"},
		{"nat64 of public", def, "64:ff9b::5db8:d822", ""},
		{"6to4 of rfc1918", def, "2002:c0a8:101::1", "embeds 192.168.1.1"},
		{"teredo of loopback client", def, "2001:0:4136:e378:8000:63bf:80ff:fffe", "embeds 127.0.0.1"},
		{"telescope prefix", def, "44.0.0.9", "telescope's prefix"},
		{"own address", def, "8.8.4.4", "this host's address"},
		{"allow opens its range", NewPolicy([]netip.Prefix{pfx("127.0.0.1/32")}, nil, nil, nil), "127.0.0.1", ""},
		{"allow opens only its range", NewPolicy([]netip.Prefix{pfx("127.0.0.1/32")}, nil, nil, nil), "127.0.0.2", "loopback"},
		{"allow covers the mapped form", NewPolicy([]netip.Prefix{pfx("127.0.0.1/32")}, nil, nil, nil), "::ffff:127.0.0.1", ""},
		{"allow opens own address", NewPolicy([]netip.Prefix{pfx("8.8.4.4/32")}, nil, nil, own), "8.8.4.4", ""},
		{"deny wins over allow", NewPolicy([]netip.Prefix{pfx("10.0.0.0/8")}, []netip.Prefix{pfx("10.9.0.0/16")}, nil, nil), "10.9.1.1", "(--deny)"},
		{"allow beside deny", NewPolicy([]netip.Prefix{pfx("10.0.0.0/8")}, []netip.Prefix{pfx("10.9.0.0/16")}, nil, nil), "10.8.1.1", ""},
		{"deny adds", NewPolicy(nil, []netip.Prefix{pfx("93.184.216.0/24")}, nil, nil), "93.184.216.34", "(--deny)"},
		{"deny covers nat64", NewPolicy(nil, []netip.Prefix{pfx("93.184.216.0/24")}, nil, nil), "64:ff9b::5db8:d822", "(--deny)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(netip.MustParseAddr(tc.addr), 80)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check(%s) = %v, want allowed", tc.addr, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrDenied)):
				t.Errorf("Check(%s) = %v, want a refusal containing %q", tc.addr, err, tc.want)
			}
		})
	}
}

func TestParseInetAton(t *testing.T) {
	tests := []struct {
		in, want string // want "" : not an inet_aton spelling
	}{
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F000001", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0x7f.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"10.0x10203", "10.1.2.3"},
		{"3232235777", "192.168.1.1"},
		{"0", "0.0.0.0"},
		{"127.0.0.1.", "127.0.0.1"},
		{"4294967296", ""},
		{"256.0.0.1", ""},
		{"1.2.3.4.5", ""},
		{"08.0.0.1", ""},
		{"example.com", ""},
		{"0x", ""},
		{"1..2", ""},
		{"", ""},
	}
	for _, tc := range tests {
		a, ok := parseInetAton(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("parseInetAton(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{"localhost": "127.0.0.1", "LocalHost.": "127.0.0.1", "a.localhost": "127.0.0.1",
		"2130706433": "127.0.0.1", "::1": "::1", "example.com": "example.com", "notlocalhost": "notlocalhost"} {
		if got := dialHost(in); got != want {
			t.Errorf("dialHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// listenHits serves on addr (loopback) and counts the requests.
func listenHits(t *testing.T, addr string, h http.Handler) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &hits
}

// TestDeniedLoopbackSpellings points URLs in every spelling of loopback at
// a loopback server, directly and through a redirect from an allowed
// server: each is refused before connecting, recorded as denied, and the
// internal server never sees a request; with --allow for loopback the same
// URLs are fetched, so the test can tell the two apart.
func TestDeniedLoopbackSpellings(t *testing.T) {
	secret := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("internal secret")) })
	in4, hits4 := listenHits(t, "127.0.0.1:0", secret)
	_, port4, _ := net.SplitHostPort(in4)
	var in6 string
	var hits6 *atomic.Int32
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		in6, hits6 = listenHits(t, "[::1]:0", secret)
	} else if labCI() {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	// The allowed server, on another loopback address, redirects inside.
	mux := http.NewServeMux()
	mux.HandleFunc("/to/{host}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.PathValue("host")+"/x.sh", http.StatusFound)
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/to/"+in4, http.StatusFound)
	})
	outside, _ := listenHits(t, "127.0.0.3:0", mux)

	urls := []string{
		"http://" + in4 + "/x.sh",
		"http://0.0.0.0:" + port4 + "/x.sh",
		"http://[::ffff:127.0.0.1]:" + port4 + "/x.sh",
		"http://2130706433:" + port4 + "/x.sh",
		"http://0x7f000001:" + port4 + "/x.sh",
		"http://0177.0.0.1:" + port4 + "/x.sh",
		"http://127.1:" + port4 + "/x.sh",
		"http://localhost:" + port4 + "/x.sh",
		"http://" + outside + "/to/" + in4,
		"http://" + outside + "/to/2130706433:" + port4,
		"http://" + outside + "/hop",
	}
	if in6 != "" {
		_, port6, _ := net.SplitHostPort(in6)
		urls = append(urls, "http://"+in6+"/x.sh", "http://[::]:"+port6+"/x.sh")
	}
	allowOutside := []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	d := newDownloader(t, Config{Allow: allowOutside})
	for _, u := range urls {
		r, err := d.Handle(context.Background(), target(t, u))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != KindDenied || !errors.Is(r.Err, ErrDenied) || !strings.HasPrefix(r.Status, "denied: ") {
			t.Errorf("%s: %s %q, want denied", u, r.Kind, r.Status)
		}
	}
	if h := hits4.Load(); h != 0 {
		t.Errorf("the internal IPv4 server got %d requests, want 0", h)
	}
	if hits6 != nil && hits6.Load() != 0 {
		t.Errorf("the internal IPv6 server got %d requests, want 0", hits6.Load())
	}
	if ents, _ := os.ReadDir(filepath.Join(d.cfg.Dir, "malware")); len(ents) != 0 {
		t.Errorf("malware/ has %d entries, want none", len(ents))
	}
	if s := d.Snapshot(); s.Denied != len(urls) {
		t.Errorf("Stats.Denied = %d, want %d", s.Denied, len(urls))
	}
	// The activity log has a denied row for each.
	var rows int
	ents, _ := os.ReadDir(filepath.Join(d.cfg.Dir, "activity"))
	for _, e := range ents {
		rows += strings.Count(readGzip(t, filepath.Join(d.cfg.Dir, "activity", e.Name())), "|True|denied: ")
	}
	if rows != len(urls) {
		t.Errorf("%d denied activity rows, want %d", rows, len(urls))
	}

	// Opened with --allow, the same URLs reach the servers.
	all := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/32"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("::/128")}
	d = newDownloader(t, Config{Allow: all})
	for _, u := range urls {
		r, err := d.Handle(context.Background(), target(t, u))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != KindSuccess {
			t.Errorf("%s with --allow: %s %q, want success", u, r.Kind, r.Status)
		}
	}
	if hits4.Load() == 0 {
		t.Error("with --allow the internal server got no request")
	}
}

// TestNoProxyFromEnvironment: a proxy in the environment is never used,
// so the connection goes where the policy looked.
func TestNoProxyFromEnvironment(t *testing.T) {
	proxy, proxyHits := listenHits(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("via proxy"))
	}))
	t.Setenv("HTTP_PROXY", "http://"+proxy)
	t.Setenv("http_proxy", "http://"+proxy)
	// The target is denied; through a proxy it would not be.
	d := newDownloader(t, Config{})
	r, err := d.Handle(context.Background(), target(t, "http://10.255.255.1/x.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindDenied || proxyHits.Load() != 0 {
		t.Errorf("with HTTP_PROXY: %s %q, proxy hits %d; want denied and no proxy", r.Kind, r.Status, proxyHits.Load())
	}
}

func labCI() bool { return os.Getenv("CI") == "true" }

// TestStoreQuota: a sample that would pass --max-store is refused and
// counted, and nothing is fetched while the store is full.
func TestStoreQuota(t *testing.T) {
	body := bytes.Repeat([]byte("Q"), 600)
	srv, hits := listenHits(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(append([]byte(r.URL.Path), body...))
	}))
	d := newDownloader(t, Config{MaxStore: 1000})
	var kinds []string
	for i := range 3 {
		r, err := d.Handle(context.Background(), target(t, fmt.Sprintf("http://%s/s%d", srv, i)))
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, string(r.Kind)+" "+r.Status)
	}
	s := d.Snapshot()
	if s.Stored != 1 || s.StoreFull != 2 || s.StoreBytes > 1000 || !strings.Contains(kinds[1], "store full") || !strings.Contains(kinds[2], "store full") {
		t.Errorf("after 3 fetches against a 1000-byte quota: %v, stats %+v", kinds, s)
	}
	// The third target: the first sample fits, the second did not: the
	// store is not full (603 of 1000) so the third is fetched and refused.
	if hits.Load() != 3 {
		t.Errorf("server hits = %d, want 3", hits.Load())
	}
	// Once full, nothing is fetched.
	d2 := newDownloader(t, Config{Dir: d.cfg.Dir, MaxStore: 500})
	r, err := d2.Handle(context.Background(), target(t, "http://"+srv+"/late"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindError || r.Attempted || hits.Load() != 3 || d2.Snapshot().StoreFull != 1 {
		t.Errorf("full store: %s %q attempted %v, hits %d", r.Kind, r.Status, r.Attempted, hits.Load())
	}
}
