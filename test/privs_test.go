package test

import (
	"fmt"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// TestRunDropsPrivileges reads the running telescope's credentials: once
// the TUN and routes are up, `spoki run --user nobody` runs as nobody and
// keeps CAP_NET_ADMIN alone (bit 12), which it still needs to remove its
// routes at exit; it keeps answering, and exits cleanly with the routes
// gone.
func TestRunDropsPrivileges(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "curl")
	nobody, err := user.Lookup("nobody")
	if err != nil {
		labUnavailable(t, "no user nobody: "+err.Error())
	}
	// t.TempDir's parent is private to root: give the unprivileged
	// telescope a log directory it can reach (spoki hands it to --user).
	logDir, err := os.MkdirTemp("", "spoki-privs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	tel := e2eStartTelescope(t, l, "--user", "nobody", "--log-dir", logDir)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tel.proc.Pid()))
	if err != nil {
		t.Fatalf("read spoki's status: %v", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if fields[k] != "0000000000001000" {
			t.Errorf("%s = %s, want 0000000000001000 (CAP_NET_ADMIN only)", k, fields[k])
		}
	}
	for _, k := range []string{"CapInh", "CapAmb"} {
		if fields[k] != "0000000000000000" {
			t.Errorf("%s = %s, want none", k, fields[k])
		}
	}
	if uid := strings.Fields(fields["Uid"]); len(uid) == 0 || uid[1] != nobody.Uid {
		t.Errorf("Uid = %q, want effective uid %s (nobody)", fields["Uid"], nobody.Uid)
	}
	_, _, code := e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5", "http://198.51.100.80/")
	if code != 0 {
		t.Errorf("curl after the drop: exit %d, want a page", code)
	}
	tel.stop(t)
	out, _, _ := e2eExec(t, l, l.Telescope, 5*time.Second, nil, "ip", "route")
	if strings.Contains(out, "198.51.100.0/24") {
		t.Errorf("route still present after exit:\n%s", out)
	}
	if len(e2eRawEvents(t, logDir)) == 0 {
		t.Errorf("no events written by the unprivileged telescope")
	}
}
