package tds

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

// Captured from tsql (Debian freetds-bin 1.3.17):
// tsql -H 127.0.0.1 -p PORT -U sa -P 'S3cr3t!'.
var (
	tsqlPrelogin = mustHex("1201003a0000000000001a00060100200001020021000c03002d00040400310001ff09000000000000" +
		"4d5353514c536572766572001e6a000000")
	tsqlLogin7 = mustHex("100100cb00000000c300000004000074001000000683f2f81e6a000000000000e003001888ffffff3604" +
		"00005e0002006200020066000700740004007c0009008e00040092000b00a8000a00bc00000002fc00000001bc000000bc00" +
		"0000bc0000000000000076006d007300610090a596a593a582a596a5e2a5b7a55400530051004c003100320037002e003000" +
		"2e0030002e003100bc0000005400440053002d004c00690062007200610072007900750073005f0065006e0067006c006900" +
		"730068000a0100000001ff")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParsePrelogin(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte // a whole message, header included
		want    Prelogin
		wantErr error
	}{
		// FreeTDS writes its pid little-endian.
		{name: "tsql", in: tsqlPrelogin,
			want: Prelogin{Version: "9.0.0.0", Encryption: "off", Instance: "MSSQLServer", ThreadID: 0x1e6a0000}},
		{name: "server answer", in: preloginResponse,
			want: Prelogin{Version: "15.0.2000.0", Encryption: "not_sup"}},
		{name: "encryption required, MARS", in: packet(TypePrelogin, []byte{1, 0, 11, 0, 1, 4, 0, 12, 0, 1, 0xff, 3, 1}),
			want: Prelogin{Encryption: "req", MARS: true}},
		{name: "unknown encryption", in: packet(TypePrelogin, []byte{1, 0, 6, 0, 1, 0xff, 9}), want: Prelogin{Encryption: "0x09"}},
		{name: "no terminator", in: packet(TypePrelogin, []byte{1, 0, 5, 0, 1}), wantErr: ErrMalformed},
		{name: "option past the end", in: packet(TypePrelogin, []byte{0, 0, 6, 0, 6, 0xff}), wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, payload, err := ReadMessage(bytes.NewReader(tc.in), DefaultMaxMessageBytes)
			var got Prelogin
			if err == nil {
				got, err = ParsePrelogin(payload)
			}
			if !errors.Is(err, tc.wantErr) || (err == nil && got != tc.want) {
				t.Errorf("ParsePrelogin(%x) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseLogin7(t *testing.T) {
	_, payload, err := ReadMessage(bytes.NewReader(tsqlLogin7), DefaultMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	want := Login7{TDSVersion: "0x74000004", Hostname: "vm", Username: "sa", Password: "S3cr3t!", AppName: "TSQL",
		ServerName: "127.0.0.1", Library: "TDS-Library", Language: "us_english", version: 0x74000004}
	tests := []struct {
		name    string
		in      []byte
		want    Login7
		wantErr error
	}{
		{name: "tsql", in: payload, want: want},
		{name: "short", in: payload[:93], wantErr: ErrMalformed},
		{name: "field past the end", in: payload[:100], wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLogin7(tc.in)
			if !errors.Is(err, tc.wantErr) || (err == nil && got != tc.want) {
				t.Errorf("ParseLogin7 = %+v, %v; want %+v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReadMessage(t *testing.T) {
	two := append(append([]byte{}, tsqlPrelogin...), tsqlLogin7...)
	split := []byte{TypeLogin7, 0, 0, 10, 0, 0, 1, 0, 'a', 'b', TypeLogin7, statusEOM, 0, 9, 0, 0, 2, 0, 'c'}
	mixed := []byte{TypeLogin7, 0, 0, 10, 0, 0, 1, 0, 'a', 'b', TypePrelogin, statusEOM, 0, 9, 0, 0, 2, 0, 'c'}
	tests := []struct {
		name     string
		in       []byte
		max      int
		wantType byte
		want     string
		wantErr  error
	}{
		{name: "first of two", in: two, max: 4096, wantType: TypePrelogin, want: string(tsqlPrelogin[8:])},
		{name: "two packets", in: split, max: 4096, wantType: TypeLogin7, want: "abc"},
		{name: "over the cap", in: split, max: 2, wantErr: ErrMalformed},
		{name: "type changes", in: mixed, max: 4096, wantErr: ErrMalformed},
		{name: "length under the header", in: []byte{TypePrelogin, 1, 0, 7, 0, 0, 0, 0}, max: 4096, wantErr: ErrMalformed},
		{name: "cut", in: tsqlLogin7[:50], max: 4096, wantErr: io.ErrUnexpectedEOF},
		{name: "cut after a packet", in: split[:10], max: 4096, wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: nil, max: 4096, wantErr: io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, got, err := ReadMessage(bytes.NewReader(tc.in), tc.max)
			if !errors.Is(err, tc.wantErr) || (err == nil && (typ != tc.wantType || string(got) != tc.want)) {
				t.Errorf("ReadMessage(%x) = %#x %q, %v; want %#x %q, %v", tc.in, typ, got, err, tc.wantType, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tsqlPrelogin)
	f.Add(tsqlLogin7)
	f.Add(preloginResponse)
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxBytes = 512
		Match(in)
		r := bytes.NewReader(in)
		for {
			_, payload, err := ReadMessage(r, maxBytes)
			if err != nil {
				return
			}
			if len(payload) > maxBytes {
				t.Fatalf("payload of %d bytes, cap %d", len(payload), maxBytes)
			}
			ParsePrelogin(payload)
			if l, err := ParseLogin7(payload); err == nil {
				LoginFailed(l)
			}
		}
	})
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"tsql PRELOGIN", tsqlPrelogin, true},
		{"LOGIN7", tsqlLogin7, false},
		{"not end of message", []byte{TypePrelogin, 0, 0, 58, 0, 0, 0, 0}, false},
		{"huge", []byte{TypePrelogin, 1, 0xff, 0xff, 0, 0, 0, 0}, false},
		{"short", tsqlPrelogin[:4], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match(tc.in); got != tc.want {
				t.Errorf("Match(%x) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
