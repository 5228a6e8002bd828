package ssh_test

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/ssh"
)

// kexinit builds a client's binary KEXINIT packet from its ten lists.
func kexinit(lists ...string) []byte {
	p := append([]byte{20}, make([]byte, 16)...)
	for _, l := range lists {
		p = binary.BigEndian.AppendUint32(p, uint32(len(l)))
		p = append(p, l...)
	}
	p = append(p, 0, 0, 0, 0, 0)
	pad := 8 - (5+len(p))%8
	if pad < 4 {
		pad += 8
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(1+len(p)+pad))
	out = append(out, byte(pad))
	out = append(out, p...)
	return append(out, make([]byte, pad)...)
}

// The Cyberduck example of salesforce/hassh's README: its lists and its
// published hassh.
const (
	cyberKex   = "curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group15-sha512,diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256@ssh.com,diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,diffie-hellman-group16-sha384@ssh.com,diffie-hellman-group16-sha512@ssh.com,diffie-hellman-group18-sha512@ssh.com"
	cyberEnc   = "aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,blowfish-ctr,cast128-cbc,cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,serpent192-cbc,serpent192-ctr,serpent256-cbc,serpent256-ctr,3des-cbc,3des-ctr,twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,twofish256-cbc,twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256"
	cyberMac   = "hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512"
	cyberCmp   = "zlib@openssh.com,zlib,none"
	cyberHASSH = "8a8ae540028bf433cd68356c1b9e8d5b"
)

func cyberduck() []byte {
	return append([]byte("SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)\r\n"),
		kexinit(cyberKex, "ssh-rsa", cyberEnc, cyberEnc, cyberMac, cyberMac, cyberCmp, cyberCmp, "", "")...)
}

func TestParse(t *testing.T) {
	full := cyberduck()
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		ident   string
		hassh   string
	}{
		{"published hassh (Cyberduck)", full, nil, "SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)", cyberHASSH},
		{"lines before the ident", append([]byte("hello\r\nworld\n"), full...), nil, "SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)", cyberHASSH},
		{"ident only", []byte("SSH-2.0-Go\r\n"), ssh.ErrIncomplete, "SSH-2.0-Go", ""},
		{"cut in the packet", full[:len(full)-10], ssh.ErrIncomplete, "SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)", ""},
		{"no ident", []byte(strings.Repeat("x", 300)), ssh.ErrNoIdent, "", ""},
		{"huge packet", []byte("SSH-2.0-x\r\n\x7f\xff\xff\xff\x04"), ssh.ErrPacket, "SSH-2.0-x", ""},
		{"not kexinit", append([]byte("SSH-2.0-x\r\n"), 0, 0, 0, 12, 10, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ssh.ErrPacket, "SSH-2.0-x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ssh.Parse(tc.in)
			if err != tc.wantErr {
				t.Fatalf("Parse() error = %v, want %v", err, tc.wantErr)
			}
			if c.Ident != tc.ident {
				t.Errorf("Ident = %q, want %q", c.Ident, tc.ident)
			}
			if tc.hassh != "" && (c.KexInit == nil || c.KexInit.HASSH() != tc.hassh) {
				t.Errorf("HASSH = %v, want %s", c.KexInit, tc.hassh)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(cyberduck())
	f.Add([]byte("SSH-2.0-x\r\n\x00\x00\x00\x0c\x0a\x14"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ssh.Parse(data)
		d := ssh.NewDetail(c, err)
		cd := d.Client
		if len(cd.Banner) > 255 || len(cd.Kex) > ssh.MaxListBytes || len(cd.EncC2S) > ssh.MaxListBytes ||
			(cd.HASSH != nil && len(cd.HASSH.String) > ssh.MaxListBytes) {
			t.Fatalf("caps not respected: %+v", d)
		}
		if err == nil && (cd.HASSH == nil || len(cd.HASSH.Hash) != 32) {
			t.Fatalf("hassh %+v", cd.HASSH)
		}
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOpenSSH runs a real ssh client in batch mode against the handler
// behind a Mux: it gets the banner, sends its own and its KEXINIT, and
// spoki records them with the HASSH.
func TestOpenSSH(t *testing.T) {
	sshBin := handlerstest.RequireTool(t, "ssh", "openssh-client")
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(ssh.New(ssh.Config{}), handlers.Matcher{Content: ssh.Match, Ports: ssh.Ports, SpeakFirst: 200 * time.Millisecond})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg}, 22)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(sshBin, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5", "-F", "/dev/null", "-p", port, "probe@127.0.0.1", "true")
	out, _ := cmd.CombinedOutput() // fails: spoki closes before the key exchange
	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(ssh.Detail)
	if s.AppProto != ssh.Name || !ok {
		t.Fatalf("session %s %T\nssh: %s", s.AppProto, s.Detail, out)
	}
	cd := d.Client
	if !strings.HasPrefix(cd.Banner, "SSH-2.0-OpenSSH_") || d.Error != "" || cd.HASSH == nil || len(cd.HASSH.Hash) != 32 ||
		cd.ProtoVersion != "2.0" || !strings.HasPrefix(cd.SoftwareVersion, "OpenSSH_") || strings.Contains(cd.SoftwareVersion, " ") ||
		!strings.Contains(cd.Kex, "curve25519-sha256") || !strings.Contains(cd.HASSH.String, ";") ||
		d.Server == nil || d.Server.ProtoVersion != "2.0" || d.Server.SoftwareVersion == "" {
		t.Errorf("Detail = %+v\nssh: %s", d, out)
	}
	t.Logf("%s: hassh %s", cd.Banner, cd.HASSH.Hash)
}

func TestParseSoftware(t *testing.T) {
	for in, want := range map[string]ssh.Software{
		"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1": {ProtoVersion: "2.0", SoftwareVersion: "OpenSSH_8.9p1"},
		"SSH-1.99-Cisco-1.25":                     {ProtoVersion: "1.99", SoftwareVersion: "Cisco-1.25"},
		"SSH-2.0-":                                {ProtoVersion: "2.0"},
		"SSH-2.0":                                 {ProtoVersion: "2.0"},
		"GET / HTTP/1.1":                          {},
	} {
		if got := ssh.ParseSoftware(in); got != want {
			t.Errorf("ParseSoftware(%q) = %+v, want %+v", in, got, want)
		}
	}
}
