package tds_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/tds"
)

// TestTSQL logs in with FreeTDS's tsql through a Mux on a loopback
// listener: the PRELOGIN and LOGIN7 are recorded, password included, and
// tsql reports the login failure the handler answers.
func TestTSQL(t *testing.T) {
	bin := handlerstest.RequireTool(t, "tsql", "freetds-bin")
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(tds.New(tds.Config{}), handlers.Matcher{Content: tds.Match, Ports: tds.Ports})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 1433)
	_, port, _ := net.SplitHostPort(addr)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-H", "127.0.0.1", "-p", port, "-U", "sa", "-P", "S3cr3t!")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user freetds.conf
	out, _ := cmd.CombinedOutput()                      // tsql fails: the login is refused
	if !strings.Contains(string(out), "Login failed for user 'sa'") {
		t.Errorf("tsql output %q, want the handler's login failure", out)
	}

	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(tds.Detail)
	if s.AppProto != tds.Name || !ok || d.Login == nil {
		t.Fatalf("session %q %+v, want %q tds.Detail with login", s.AppProto, s.Detail, tds.Name)
	}
	if d.Encryption == "" || d.Version == "" || s.Error != "" {
		t.Errorf("prelogin %+v, error %q; want version and encryption, no error", d.Prelogin, s.Error)
	}
	if l := d.Login; l.Username != "sa" || l.Password != "S3cr3t!" || l.AppName != "TSQL" || l.Hostname == "" {
		t.Errorf("login %+v; want sa / S3cr3t! from TSQL with a hostname", l)
	}
}
