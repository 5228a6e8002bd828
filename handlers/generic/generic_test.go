package generic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
)

func TestServe(t *testing.T) {
	big := bytes.Repeat([]byte("A"), 6000)
	tests := []struct {
		name      string
		segments  []string // sent 30 ms apart
		wantFirst int
		wantBytes int
		wantTrunc bool
		wantMore  string // "" checks only that first + more = bytes
	}{
		{name: "nothing sent", wantBytes: 0},
		{name: "one segment", segments: []string{"USER root\r\n"}, wantFirst: 11, wantBytes: 11},
		{name: "more within the window", segments: []string{"GET / HTTP/1.1\r\n", "Host: x\r\n\r\n"},
			wantFirst: 16, wantBytes: 27, wantMore: "Host: x\r\n\r\n"},
		{name: "exactly the cap", segments: []string{string(big[:4096])}, wantFirst: -1, wantBytes: 4096},
		{name: "over the cap", segments: []string{string(big)}, wantFirst: -1, wantBytes: 4096, wantTrunc: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, rec := handlerstest.NewMux(t, handlers.MuxConfig{
				Registry:         handlers.NewRegistry(generic.New(generic.Config{ReadWindow: 200 * time.Millisecond})),
				FirstDataTimeout: 50 * time.Millisecond,
			})
			server, client := handlerstest.TCPPair(t)
			go m.ServeConn(server, handlerstest.Flow(server, 4444))
			for i, seg := range tc.segments {
				if i > 0 {
					time.Sleep(30 * time.Millisecond)
				}
				if _, err := client.Write([]byte(seg)); err != nil {
					t.Fatal(err)
				}
			}

			// Generic answers nothing and ends with a reset.
			got, err := io.ReadAll(client)
			if len(got) != 0 || !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("client read %q, %v; want nothing, ECONNRESET", got, err)
			}
			s := rec.Wait(t, 1)[0]
			d, ok := s.Detail.(generic.Detail)
			if !ok {
				t.Fatalf("Detail = %T, want generic.Detail", s.Detail)
			}
			if s.AppProto != generic.Name || s.Error != "" || s.BytesToClient != 0 {
				t.Errorf("session app_proto %q, error %q, to_client %d; want generic, none, 0", s.AppProto, s.Error, s.BytesToClient)
			}
			if d.Bytes != tc.wantBytes || d.Truncated != tc.wantTrunc {
				t.Errorf("Detail = {%d, %v}, want {%d, %v}", d.Bytes, d.Truncated, tc.wantBytes, tc.wantTrunc)
			}
			if tc.wantFirst >= 0 && len(s.Payload) != tc.wantFirst {
				t.Errorf("len(Payload) = %d, want %d", len(s.Payload), tc.wantFirst)
			}
			if tc.wantMore != "" && string(d.More) != tc.wantMore {
				t.Errorf("More = %q, want %q", d.More, tc.wantMore)
			}
			if len(s.Payload)+len(d.More) != d.Bytes {
				t.Errorf("len(Payload) %d + len(More) %d != Bytes %d", len(s.Payload), len(d.More), d.Bytes)
			}
		})
	}
}

func TestDetailJSON(t *testing.T) {
	tests := []struct {
		name string
		d    generic.Detail
		want string
	}{
		{"empty", generic.Detail{}, `{"bytes":0,"truncated":false}`},
		{"more", generic.Detail{Bytes: 7, More: []byte("abc")}, `{"bytes":7,"truncated":false,"more":"YWJj"}`},
		{"truncated", generic.Detail{Bytes: 4096, Truncated: true}, `{"bytes":4096,"truncated":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.d)
			if err != nil || string(got) != tc.want {
				t.Errorf("json.Marshal(%+v) = %s, %v, want %s", tc.d, got, err, tc.want)
			}
			var back struct {
				Bytes     int    `json:"bytes"`
				Truncated bool   `json:"truncated"`
				More      []byte `json:"more"`
			}
			if err := json.NewDecoder(strings.NewReader(string(got))).Decode(&back); err != nil ||
				back.Bytes != tc.d.Bytes || back.Truncated != tc.d.Truncated || !bytes.Equal(back.More, tc.d.More) {
				t.Errorf("decode %s = %+v, %v, want %+v", got, back, err, tc.d)
			}
		})
	}
}
