package adb_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/adb"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
)

// serve runs a Mux with the adb handler on port 5555 behind a 127.0.0.1
// listener and returns the listener's port and the session recorder.
func serve(t *testing.T) (string, *handlerstest.Recorder) {
	t.Helper()
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(adb.New(adb.Config{}), handlers.Matcher{Content: adb.Match, Ports: adb.Ports})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 5555)
	_, port, _ := net.SplitHostPort(addr)
	return port, rec
}

// freePort returns a loopback port nothing listens on, for the adb server.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestADBClient connects Debian's adb to the handler, runs a shell
// command as the bots do and checks what was recorded. The adb server
// daemon runs on a port of its own, with a private HOME, and is killed
// when the test ends.
func TestADBClient(t *testing.T) {
	bin := handlerstest.RequireTool(t, "adb", "adb")
	port, rec := serve(t)
	serverPort := freePort(t)
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-P", serverPort}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "ANDROID_ADB_SERVER_PORT="+serverPort)
		cmd.WaitDelay = time.Second // the daemon it forks keeps no pipe of ours open for long
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := run("kill-server"); err != nil {
			t.Errorf("adb kill-server: %v: %s", err, out)
		}
	})

	device := "127.0.0.1:" + port
	if out, err := run("connect", device); err != nil || !strings.Contains(out, "connected to "+device) {
		t.Fatalf("adb connect %s = %q, %v; want connected", device, out, err)
	}
	if out, err := run("-s", device, "wait-for-device"); err != nil {
		t.Fatalf("adb wait-for-device = %q, %v", out, err)
	}
	if out, err := run("-s", device, "shell", "cd /data/local/tmp; echo hi"); err != nil {
		t.Fatalf("adb shell = %q, %v", out, err)
	}
	if out, err := run("-s", device, "get-state"); err != nil || strings.TrimSpace(out) != "device" {
		t.Errorf("adb get-state = %q, %v; want device", out, err)
	}
	if out, err := run("disconnect", device); err != nil {
		t.Fatalf("adb disconnect = %q, %v", out, err)
	}

	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(adb.Detail)
	if s.AppProto != adb.Name || !ok {
		t.Fatalf("session %q %T, want %q adb.Detail", s.AppProto, s.Detail, adb.Name)
	}
	t.Logf("detail %+v", d)
	if d.Version != 0x01000001 || d.MaxData == 0 || !strings.HasPrefix(d.Banner, "host::") || s.Error != "" {
		t.Errorf("version %#x maxdata %d banner %q error %q; want 0x1000001, >0, host::..., none",
			d.Version, d.MaxData, d.Banner, s.Error)
	}
	if !slices.Contains(d.Services, "shell:cd /data/local/tmp; echo hi") {
		t.Errorf("services %q, want shell:cd /data/local/tmp; echo hi", d.Services)
	}
}
