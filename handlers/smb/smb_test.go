package smb_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/smb"
)

// TestSMBClient lists shares with Debian's smbclient through a Mux on a
// loopback listener, in SMB2 and in SMB1: smbclient fails after the
// NEGOTIATE (spoki answers nothing more), and the session records it.
func TestSMBClient(t *testing.T) {
	bin := handlerstest.RequireTool(t, "smbclient", "smbclient")
	tests := []struct {
		name         string
		options      []string
		wantVersion  int
		wantDialects []string
		wantSelected string
	}{
		{name: "smb2", wantVersion: 2, wantDialects: []string{"2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"}, wantSelected: "3.0.2"},
		{name: "smb1 offering smb2", options: []string{"--option=client min protocol=NT1"}, wantVersion: 1,
			wantDialects: []string{"NT LANMAN 1.0", "NT LM 0.12", "SMB 2.002", "SMB 2.???"}, wantSelected: "2.???"},
		{name: "smb1 only", options: []string{"--option=client min protocol=NT1", "--option=client max protocol=NT1"},
			wantVersion: 1, wantDialects: []string{"NT LANMAN 1.0", "NT LM 0.12"}, wantSelected: "NT LM 0.12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := handlers.NewRegistry(generic.New(generic.Config{}))
			reg.Register(smb.New(smb.Config{}), handlers.Matcher{Content: smb.Match, Ports: smb.Ports})
			addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 445) // smbclient may retry
			_, port, _ := net.SplitHostPort(addr)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"-L", "//127.0.0.1", "-p", port, "-N"}, tc.options...)
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, _ := cmd.CombinedOutput() // fails: spoki stops after NEGOTIATE
			s := rec.Wait(t, 1)[0]
			d, ok := s.Detail.(smb.Detail)
			if s.AppProto != smb.Name || !ok {
				t.Fatalf("session %q %T, want %q smb.Detail (smbclient said %q)", s.AppProto, s.Detail, smb.Name, out)
			}
			if d.Version != tc.wantVersion || !reflect.DeepEqual(d.Dialects, tc.wantDialects) ||
				d.Selected != tc.wantSelected || s.Error != "" {
				t.Errorf("detail %+v, error %q; want version %d, dialects %q, selected %q, no error (smbclient said %q)",
					d, s.Error, tc.wantVersion, tc.wantDialects, tc.wantSelected, out)
			}
			if (d.ClientGUID != "") != (tc.wantVersion == 2) {
				t.Errorf("client_guid %q for version %d", d.ClientGUID, d.Version)
			}
			if s.BytesToClient == 0 {
				t.Errorf("to_client 0: no answer sent")
			}
			t.Logf("smbclient: %q", out)
		})
	}
}
