package mqtt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// Captured from mosquitto_pub 2.0.11 (Debian mosquitto-clients):
//
//	mosquitto_pub -i bot-7 -u admin -P pa:ss -t cmd/x -m hello -V mqttv311
//	mosquitto_pub -i v5c -t t -m hi -V mqttv5 --will-topic w/t --will-payload bye
const (
	pub311 = "\x10\x1f\x00\x04MQTT\x04\xc2\x00<\x00\x05bot-7\x00\x05admin\x00\x05pa:ss" +
		"0\x0c\x00\x05cmd/xhello\xe0\x00"
	pub5 = "\x10\x1e\x00\x04MQTT\x05\x06\x00<\x03!\x00\x14\x00\x03v5c\x00\x00\x03w/t\x00\x03bye" +
		"0\x06\x00\x01t\x00hi\xe0\x00"
	// MQTT 3.1, as old bots still send it: no credentials, empty client id.
	connect31 = "\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00"
)

func TestReadPacketParseConnect(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     Connect
		wantRest []string // types of the packets after CONNECT
		wantErr  error
	}{
		{name: "mosquitto_pub 3.1.1", in: pub311,
			want: Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "bot-7", Username: "admin",
				Password: "pa:ss", HasUsername: true, HasPassword: true, KeepAlive: 60},
			wantRest: []string{"PUBLISH", "DISCONNECT"}},
		{name: "mosquitto_pub 5 with will", in: pub5,
			want:     Connect{ProtocolName: "MQTT", ProtocolLevel: 5, ClientID: "v5c", WillTopic: "w/t", KeepAlive: 60},
			wantRest: []string{"PUBLISH", "DISCONNECT"}},
		{name: "3.1", in: connect31, want: Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, KeepAlive: 60}},
		{name: "empty password flag", in: "\x10\x11\x00\x04MQTT\x04\xc0\x00\x00\x00\x00\x00\x01u\x00\x00",
			want: Connect{ProtocolName: "MQTT", ProtocolLevel: 4, Username: "u", HasUsername: true, HasPassword: true}},
		{name: "truncated body", in: "\x10\x0c\x00\x04MQTT\x04\xc2\x00<\x00\x05bo", wantErr: ErrMalformed},
		{name: "not mqtt", in: "\x10\x08\x00\x04HTTP\x04\x00", wantErr: ErrMalformed},
		{name: "short packet", in: "\x10\x1f\x00\x04MQ", wantErr: io.ErrUnexpectedEOF},
		{name: "over the cap", in: "\x10\xff\xff\x03", wantErr: ErrMalformed},
		{name: "length over 4 bytes", in: "\x10\xff\xff\xff\xff\x01", wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader([]byte(tc.in))
			first, body, err := ReadPacket(r, DefaultMaxPacketBytes)
			var got Connect
			if err == nil {
				if first>>4 != typeConnect {
					t.Fatalf("ReadPacket(%q) type %s, want CONNECT", tc.in, TypeName(first))
				}
				got, err = ParseConnect(body)
			}
			if !errors.Is(err, tc.wantErr) || (err == nil && got != tc.want) {
				t.Fatalf("ReadPacket+ParseConnect(%q) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			var rest []string
			for {
				first, _, err := ReadPacket(r, DefaultMaxPacketBytes)
				if err != nil {
					break
				}
				rest = append(rest, TypeName(first))
			}
			if tc.wantErr == nil && len(rest) != len(tc.wantRest) {
				t.Errorf("packets after CONNECT = %q, want %q", rest, tc.wantRest)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"3.1.1", pub311, true},
		{"5", pub5, true},
		{"3.1", connect31, true},
		{"two-byte length", "\x10\x80\x01\x00\x04MQTT\x04", true},
		{"publish", "\x30\x0c\x00\x05cmd/x", false},
		{"http", "GET / HTTP/1.1\r\n", false},
		{"cut", "\x10\x1f\x00\x04MQ", false},
		{"endless length", "\x10\xff\xff\xff\xff\xff", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match([]byte(tc.in)); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{pub311, pub5, connect31, "\x10\x00", "\x10\x04\x00\x04MQ"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxBytes = 64
		Match(in)
		r := bytes.NewReader(in)
		for {
			first, body, err := ReadPacket(r, maxBytes)
			if err != nil {
				return
			}
			if len(body) > maxBytes {
				t.Fatalf("body of %d bytes, cap %d", len(body), maxBytes)
			}
			TypeName(first)
			if c, err := ParseConnect(body); err == nil {
				if n := len(c.ClientID) + len(c.Username) + len(c.Password) + len(c.WillTopic); n > len(body) {
					t.Fatalf("recorded %d bytes from a body of %d", n, len(body))
				}
			}
		}
	})
}
