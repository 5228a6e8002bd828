package tls_test

import (
	"encoding/binary"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/handlers/tls"
)

type ext struct {
	typ  uint16
	body []byte
}

func u16(vs ...uint16) []byte {
	b := make([]byte, 0, 2*len(vs))
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func vec16(b []byte) []byte { return append(u16(uint16(len(b))), b...) }
func vec8(b []byte) []byte  { return append([]byte{byte(len(b))}, b...) }

func sniExt(name string) ext {
	return ext{0x0000, vec16(append([]byte{0}, vec16([]byte(name))...))}
}

func alpnExt(protos ...string) ext {
	var l []byte
	for _, p := range protos {
		l = append(l, vec8([]byte(p))...)
	}
	return ext{0x0010, vec16(l)}
}

// hello builds a ClientHello record: legacy version v, ciphers and
// extensions in wire order.
func hello(v uint16, ciphers []uint16, exts ...ext) []byte {
	body := u16(v)
	body = append(body, make([]byte, 32)...)       // random
	body = append(body, vec8(make([]byte, 32))...) // session id
	body = append(body, vec16(u16(ciphers...))...) // cipher suites
	body = append(body, 1, 0)                      // null compression
	if exts != nil {
		var e []byte
		for _, x := range exts {
			e = append(e, u16(x.typ)...)
			e = append(e, vec16(x.body)...)
		}
		body = append(body, vec16(e)...)
	}
	msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, 0x03, 0x01, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

// foxioHello rebuilds a ClientHello of FoxIO's tls-sni.pcapng (Chrome),
// from the JA4_ro published in FoxIO-LLC/ja4
// python/test/testdata/tls-sni.pcapng.json: the ciphers and extensions in
// wire order, with GREASE values added where Chrome puts them (they must
// not count).
func foxioHello(extOrder []uint16, alpn bool) []byte {
	ciphers := []uint16{0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	bodies := map[uint16][]byte{
		0x0000: sniExt("clientservices.googleapis.com").body,
		0x000a: vec16(u16(0x3a3a, 0x001d, 0x0017, 0x0018)),
		0x000b: vec8([]byte{0}),
		0x000d: vec16(u16(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)),
		0x0010: alpnExt("h2", "http/1.1").body,
		0x002b: vec8(u16(0x4a4a, 0x0304, 0x0303)),
	}
	exts := []ext{{0x1a1a, nil}}
	for _, t := range extOrder {
		if t == 0x0010 && !alpn {
			continue
		}
		exts = append(exts, ext{t, bodies[t]})
	}
	exts = append(exts, ext{0xdada, []byte{0}})
	return hello(0x0303, ciphers, exts...)
}

func TestJA4PublishedVectors(t *testing.T) {
	tests := []struct {
		name                   string
		rec                    []byte
		ja4, ja4r, ja4o, ja4ro string
	}{
		{
			name: "tls-sni stream 0 (h2)",
			rec: foxioHello([]uint16{0xff01, 0x0033, 0x002d, 0x0005, 0x4469, 0x000d, 0x0010, 0x0023, 0x001b, 0x002b, 0x0000,
				0x0012, 0x000a, 0x0017, 0x000b, 0x0015}, true),
			ja4:   "t13d1516h2_8daaf6152771_e5627efa2ab1",
			ja4r:  "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
			ja4o:  "t13d1516h2_acb858a92679_8fc3c02244b2",
			ja4ro: "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_ff01,0033,002d,0005,4469,000d,0010,0023,001b,002b,0000,0012,000a,0017,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name: "tls-sni stream 6 (no ALPN)",
			rec: foxioHello([]uint16{0x0033, 0x002b, 0x001b, 0x0000, 0x0012, 0x002d, 0x000d, 0x000a, 0x0005, 0x0023, 0x0017,
				0xff01, 0x000b, 0x0015}, false),
			ja4:   "t13d151400_8daaf6152771_de4a06bb82e3",
			ja4r:  "t13d151400_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
			ja4o:  "t13d151400_acb858a92679_2f4561be1d1f",
			ja4ro: "t13d151400_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_0033,002b,001b,0000,0012,002d,000d,000a,0005,0023,0017,ff01,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tls.Parse(tc.rec)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := ch.JA4()
			want := tls.JA4{JA4: tc.ja4, JA4R: tc.ja4r, JA4O: tc.ja4o, JA4RO: tc.ja4ro}
			if got != want {
				t.Errorf("JA4() =\n%+v, want\n%+v", got, want)
			}
		})
	}
}

func TestJA3PublishedVectors(t *testing.T) {
	// The examples of salesforce/ja3's README, with GREASE values added
	// to ciphers, extensions and groups (JA3 ignores them).
	tests := []struct {
		name, str, hash string
		rec             []byte
	}{
		{
			name: "README example 1",
			rec: hello(0x0301, []uint16{0x0a0a, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4},
				sniExt("example.com"), ext{0x2a2a, nil}, ext{10, vec16(u16(0xfafa, 23, 24, 25))}, ext{11, vec8([]byte{0})}),
			str:  "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
			hash: "ada70206e40642a3e4461f35503241d5",
		},
		{
			name: "README example 2, no extensions",
			rec:  hello(0x0301, []uint16{4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99}),
			str:  "769,4-5-10-9-100-98-3-6-19-18-99,,,",
			hash: "de350869b8c85de67a350c8d186f11e6",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tls.Parse(tc.rec)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			s, h := ch.JA3()
			if s != tc.str || h != tc.hash {
				t.Errorf("JA3() = %q, %s; want %q, %s", s, h, tc.str, tc.hash)
			}
		})
	}
}

func TestParse(t *testing.T) {
	full := hello(0x0303, []uint16{0x1301}, sniExt("a.test"), alpnExt("http/1.1"), ext{0x002b, vec8(u16(0x0304))})
	// The same hello in two records, split inside the handshake header.
	msg := full[5:]
	split := append([]byte{0x16, 0x03, 0x01, 0x00, 0x02}, msg[:2]...)
	split = append(split, 0x16, 0x03, 0x01, byte((len(msg)-2)>>8), byte(len(msg)-2))
	split = append(split, msg[2:]...)
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		sni     string
		ja4     string // prefix
	}{
		{"one record", full, nil, "a.test", "t13d0103h1_"},
		{"two records", split, nil, "a.test", "t13d0103h1_"},
		{"cut short", full[:len(full)-3], tls.ErrIncomplete, "", ""},
		{"not handshake", []byte("\x17\x03\x03\x00\x01x"), tls.ErrNotHello, "", ""},
		{"server hello", []byte("\x16\x03\x03\x00\x04\x02\x00\x00\x00"), tls.ErrNotHello, "", ""},
		{"bad cipher length", []byte("\x16\x03\x01\x00\x29\x01\x00\x00\x25\x03\x03" + strings.Repeat("\x00", 32) + "\x00\xff\xff"), tls.ErrMalformed, "", ""},
		{"empty record", []byte("\x16\x03\x01\x00\x00"), tls.ErrMalformed, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tls.Parse(tc.in)
			if err != tc.wantErr {
				t.Fatalf("Parse() error = %v, want %v", err, tc.wantErr)
			}
			if ch.SNI != tc.sni {
				t.Errorf("SNI = %q, want %q", ch.SNI, tc.sni)
			}
			if j := ch.JA4().JA4; err == nil && !strings.HasPrefix(j, tc.ja4) {
				t.Errorf("JA4 = %s, want prefix %s", j, tc.ja4)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(hello(0x0303, []uint16{0x1301}, sniExt("a.test"), alpnExt("h2")))
	f.Add(foxioHello([]uint16{0x0000, 0x000a, 0x000b, 0x000d, 0x0010, 0x002b}, true))
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := tls.Parse(data)
		d := tls.NewDetail(&ch)
		if len(d.CipherSuites) > tls.MaxListLen || len(d.Extensions) > tls.MaxListLen || len(d.SNI) > 255 || len(ch.ALPN) > 16 {
			t.Fatalf("caps not respected: %+v", d)
		}
		for _, p := range ch.ALPN {
			if len(p) > 64 {
				t.Fatalf("ALPN value over 64 bytes")
			}
		}
		if err == nil && (len(d.JA4) != 36 || d.JA3 == nil || len(d.JA3.Hash) != 32 || d.Version == "") {
			t.Fatalf("fingerprints %q %+v, version %q", d.JA4, d.JA3, d.Version)
		}
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOpenSSL serves a real openssl s_client: SNI, JA3 and JA4 are
// recorded, and the client gets the alert.
func TestOpenSSL(t *testing.T) {
	openssl := handlerstest.RequireTool(t, "openssl", "openssl")
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	reg.Register(tls.New(tls.Config{}), handlers.Matcher{Content: tls.Match, Ports: tls.Ports})
	addr, rec := handlerstest.Serve(t, handlers.MuxConfig{Registry: reg, FirstDataTimeout: 2 * time.Second}, 80) // TLS on port 80: content wins
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-servername", "x.test", "-alpn", "h2,http/1.1")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput() // fails: no certificate, by design
	s := rec.Wait(t, 1)[0]
	d, ok := s.Detail.(tls.Detail)
	if s.AppProto != tls.Name || !ok {
		t.Fatalf("session %s %T, want tls Detail\nopenssl: %s", s.AppProto, s.Detail, out)
	}
	if d.SNI != "x.test" || d.Error != "" || !strings.HasPrefix(d.JA4, "t13d") || !strings.Contains(d.JA4, "h2_") ||
		d.JA3 == nil || len(d.JA3.Hash) != 32 || d.Version != "TLS 1.3" || d.HelloVersion != 0x0303 {
		t.Errorf("Detail = %+v\nopenssl: %s", d, out)
	}
	if !strings.Contains(string(out), "alert handshake failure") {
		t.Logf("openssl did not report the alert: %s", out)
	}
	t.Logf("openssl %s: %s JA3 %s JA4 %s", strings.TrimSpace(versionOf(openssl)), d.Version, d.JA3.Hash, d.JA4)
}

func versionOf(openssl string) string {
	out, _ := exec.Command(openssl, "version").Output()
	return string(out)
}

// TestVersionName checks the EVE names of TLS versions and the version a
// hello offers: the highest of supported_versions (GREASE skipped), else
// the legacy version.
func TestVersionName(t *testing.T) {
	for v, want := range map[uint16]string{0x0304: "TLS 1.3", 0x0303: "TLS 1.2", 0x0302: "TLS 1.1", 0x0301: "TLS 1.0",
		0x0300: "SSLv3", 0x0002: "SSLv2", 0x7f1c: "TLS 1.3 draft-28", 0x1234: "0x1234"} {
		if got := tls.VersionName(v); got != want {
			t.Errorf("VersionName(%#04x) = %q, want %q", v, got, want)
		}
	}
	for _, tc := range []struct {
		ch   tls.ClientHello
		want string
	}{
		{tls.ClientHello{Version: 0x0303, SupportedVersions: []uint16{0x1a1a, 0x0304, 0x0303}}, "TLS 1.3"},
		{tls.ClientHello{Version: 0x0303}, "TLS 1.2"},
		{tls.ClientHello{Version: 0x0301, SupportedVersions: []uint16{0xfafa}}, "TLS 1.0"},
	} {
		if got := tls.NewDetail(&tc.ch).Version; got != tc.want {
			t.Errorf("NewDetail(%+v).Version = %q, want %q", tc.ch, got, tc.want)
		}
	}
}
