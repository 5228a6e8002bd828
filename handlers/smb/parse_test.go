package smb

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// Captured from smbclient (Debian smbclient 4.17.12), smbclient -L
// //127.0.0.1 -p PORT -N: by default (SMB2), with client max protocol=NT1
// (SMB1 only), and with client min protocol=NT1 (SMB1 offering SMB2).
var (
	clientSMB2 = mustHex("000000e2fe534d42400000000000000000001f000000000000000000000000000000000000000000000000" +
		"0000000000000000000000000000000000000000000000000024000500010000007f000000ab5689fd2837ac41a0dfa46df25036" +
		"4770000000040000000202100200030203110300000100260000000000010020000100ad947b5bff213b7a89896d050eb0d342ee" +
		"a9c0d99be6fb4d30e2fca2f22804f4000002000a0000000000040002000100040003000000000000000800080000000000030002" +
		"000100000005001200000000003100320037002e0030002e0030002e003100")
	clientNT1 = mustHex("0000003eff534d4272000000001843c80000000000000000000000000000feff00000000001b00024e5420" +
		"4c414e4d414e20312e3000024e54204c4d20302e313200")
	clientNT1SMB2 = mustHex("00000054ff534d4272000000001843c80000000000000000000000000000feff0000000000310002" +
		"4e54204c414e4d414e20312e3000024e54204c4d20302e31320002534d4220322e3030320002534d4220322e3f3f3f00")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseNegotiate(t *testing.T) {
	tests := []struct {
		name         string
		in           []byte // a NetBIOS frame
		want         Negotiate
		wantSelected string
		wantErr      error
	}{
		{name: "smbclient SMB2", in: clientSMB2, wantSelected: "3.0.2",
			want: Negotiate{Version: 2, Dialects: []string{"2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"},
				ClientGUID: "fd8956ab-3728-41ac-a0df-a46df2503647"}},
		{name: "smbclient NT1", in: clientNT1, wantSelected: "NT LM 0.12",
			want: Negotiate{Version: 1, Dialects: []string{"NT LANMAN 1.0", "NT LM 0.12"}}},
		{name: "smbclient NT1 and SMB2", in: clientNT1SMB2, wantSelected: "2.???",
			want: Negotiate{Version: 1, Dialects: []string{"NT LANMAN 1.0", "NT LM 0.12", "SMB 2.002", "SMB 2.???"}}},
		{name: "SMB1, old dialects only", wantSelected: "",
			in:   frame(append(smb1Header(Negotiate{}), 0, 11, 0, 2, 'L', 'A', 'N', 'M', 'A', 'N', '1', '.', '0', 0)),
			want: Negotiate{Version: 1, Dialects: []string{"LANMAN1.0"}}},
		{name: "SMB1 dialect not terminated", in: frame(append(smb1Header(Negotiate{}), 0, 3, 0, 2, 'N', 'T')), wantErr: ErrMalformed},
		{name: "SMB1 byte count too big", in: frame(append(smb1Header(Negotiate{}), 0, 99, 0)), wantErr: ErrMalformed},
		{name: "SMB2 dialect count too big", in: func() []byte {
			b := bytes.Clone(clientSMB2)
			b[4+64+2] = 0xff
			return b
		}(), wantErr: ErrMalformed},
		{name: "not a negotiate", in: frame([]byte("\xfeSMB@\x00\x00\x00")), wantErr: ErrMalformed},
		{name: "not smb", in: frame([]byte("GET / HTTP/1.0\r\n\r\n")), wantErr: ErrMalformed},
		{name: "frame over the cap", in: []byte{0, 0x10, 0, 0}, wantErr: ErrMalformed},
		{name: "frame cut", in: clientNT1[:20], wantErr: io.ErrUnexpectedEOF},
	}
	h := New(Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, msg, err := ReadFrame(bytes.NewReader(tc.in), DefaultMaxFrameBytes)
			var got Negotiate
			if err == nil {
				got, err = ParseNegotiate(msg)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseNegotiate(%x) error %v, want %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.Version != tc.want.Version || !reflect.DeepEqual(got.Dialects, tc.want.Dialects) || got.ClientGUID != tc.want.ClientGUID {
				t.Errorf("ParseNegotiate(%x) = %+v, want %+v", tc.in, got, tc.want)
			}
			if sel, resp := h.answer(got, time.Now()); sel != tc.wantSelected || len(resp) < smb1HeaderBytes {
				t.Errorf("answer(%+v) = %q, %d bytes; want %q", got, sel, len(resp), tc.wantSelected)
			}
		})
	}
}

// TestResponses checks the answers' fixed fields against the spec's
// offsets, and that the SPNEGO blob is DER.
func TestResponses(t *testing.T) {
	h := New(Config{})
	_, msg, _ := ReadFrame(bytes.NewReader(clientSMB2), DefaultMaxFrameBytes)
	n, _ := ParseNegotiate(msg)
	resp := h.smb2Response(n.messageID, dialect302, time.Now())
	le := uint16le
	if len(resp) != 128+len(securityBlob) || le(resp[64:]) != 65 || le(resp[68:]) != dialect302 ||
		le(resp[64+56:]) != 128 || !bytes.Equal(resp[128:], securityBlob) {
		t.Errorf("smb2Response = %x: wrong structure size, dialect or security buffer", resp)
	}
	_, msg, _ = ReadFrame(bytes.NewReader(clientNT1), DefaultMaxFrameBytes)
	n, _ = ParseNegotiate(msg)
	resp = h.smb1Response(n, 1, time.Now())
	if resp[32] != 17 || le(resp[33:]) != 1 || int(le(resp[32+1+34:])) != 16+len(securityBlob) ||
		len(resp) != 32+1+34+2+16+len(securityBlob) || le(resp[26:]) != 0xfffe {
		t.Errorf("smb1Response = %x: wrong word count, dialect index, byte count or PID", resp)
	}
	var spnego asn1.RawValue
	if rest, err := asn1.Unmarshal(securityBlob, &spnego); err != nil || len(rest) != 0 || spnego.Tag != 0 ||
		spnego.Class != asn1.ClassApplication {
		t.Errorf("securityBlob: %v, %d bytes left, tag %d class %d; want one [APPLICATION 0]", err, len(rest), spnego.Tag, spnego.Class)
	}
}

func uint16le(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func FuzzParse(f *testing.F) {
	f.Add(clientSMB2)
	f.Add(clientNT1)
	f.Add(clientNT1SMB2)
	h := New(Config{})
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxBytes = 512
		Match(in)
		_, msg, err := ReadFrame(bytes.NewReader(in), maxBytes)
		if err != nil {
			return
		}
		if len(msg) > maxBytes {
			t.Fatalf("frame of %d bytes, cap %d", len(msg), maxBytes)
		}
		n, err := ParseNegotiate(msg)
		if len(n.Dialects) > maxDialects {
			t.Fatalf("%d dialects, cap %d", len(n.Dialects), maxDialects)
		}
		for _, d := range n.Dialects {
			if len(d) > maxDialectBytes {
				t.Fatalf("dialect of %d bytes, cap %d", len(d), maxDialectBytes)
			}
		}
		if err == nil {
			h.answer(n, time.Now())
		}
	})
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"smbclient SMB2", clientSMB2, true},
		{"smbclient NT1", clientNT1, true},
		{"session request", []byte{0x81, 0, 0, 0x44, 0x20, 0x43, 0x4b, 0x46}, false},
		{"short", clientSMB2[:6], false},
		{"http", []byte("GET / HTTP/1.1\r\n"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match(tc.in); got != tc.want {
				t.Errorf("Match(%x) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
