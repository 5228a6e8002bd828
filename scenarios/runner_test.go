package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTelescope is a Wire whose far end answers every SYN with a SYN-ACK
// (seq 1000, ack seq+1) and acknowledges data, enough to test the runner
// without root.
type fakeTelescope struct {
	mu     sync.Mutex
	queue  chan []byte
	closed bool
	sent   []Packet
}

var _ Wire = (*fakeTelescope)(nil)

func newFakeTelescope() *fakeTelescope { return &fakeTelescope{queue: make(chan []byte, 64)} }

// WritePacket implements Wire.
func (f *fakeTelescope) WritePacket(b []byte) error {
	p, ok := DecodeIP(b)
	if !ok {
		return fmt.Errorf("fake: undecodable packet")
	}
	f.mu.Lock()
	f.sent = append(f.sent, p)
	f.mu.Unlock()
	var reply *Packet
	switch {
	case p.Flags == FlagSYN:
		reply = &Packet{Flags: FlagSYN | FlagACK, Seq: 1000, Ack: p.Seq + 1, Win: 65535, TTL: 63,
			Options: []RawOption{{Kind: optMSS, Data: []byte{0x05, 0xb4}}}}
	case len(p.Payload) > 0 && p.Ack == 1001:
		reply = &Packet{Flags: FlagACK, Seq: 1001, Ack: p.Seq + uint32(len(p.Payload)), Win: 65535, TTL: 63}
	}
	if reply != nil {
		reply.Src, reply.Dst = p.Dst, p.Src
		rb, err := reply.Marshal()
		if err != nil {
			return err
		}
		f.queue <- rb
	}
	return nil
}

// ReadPacket implements Wire.
func (f *fakeTelescope) ReadPacket(buf []byte, deadline time.Time) (int, bool, error) {
	select {
	case b := <-f.queue:
		return copy(buf, b), false, nil
	case <-time.After(time.Until(deadline)):
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed {
			return 0, false, net.ErrClosed
		}
		return 0, false, fmt.Errorf("fake: %w", os.ErrDeadlineExceeded)
	}
}

// Close implements Wire.
func (f *fakeTelescope) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// fakeEvents is an EventSource with fixed events.
type fakeEvents []Event

// Events implements EventSource.
func (e fakeEvents) Events(time.Time) ([]Event, error) { return e, nil }

func TestRunner(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		wantErr string // "" for a pass
		wantOut []string
	}{
		{
			name: "handshake with data",
			script: header + `flow a sport 40000 isn 5000
0 > S 0 win 1024 ttl 255 ipid ($dst ^ $dport ^ $seq) & 0xffff <mss 1460>
+0 < S. 0 ack 1 <mss 1460> as synack
+0 > P. 1:4(3) ack $synack.seq+1 "abc"
+0 < . 1 ack 4
+0 expect no retransmit within 200ms
`,
			wantOut: []string{"sent S seq 5000 win 1024 ttl 255 ipid " + fmt.Sprint((0xc6336407^80^5000)&0xffff), "got S. seq 1000 ack 5001", "sent P. seq 5001:5004(3) ack 1001", "got . seq 1001 ack 5004", "--- PASS"},
		},
		{
			name:    "wrong flags",
			script:  header + "0 > S 0\n+0 < R within 300ms\n",
			wantErr: "t.pkt:5: +0 < R within 300ms: no matching packet",
			wantOut: []string{"(flags S., want R)", "--- FAIL"},
		},
		{
			name:    "wrong ack",
			script:  header + "0 > S 0\n+0 < S. 0 ack 2 within 300ms\n",
			wantErr: "want",
			wantOut: []string{"(relative 1), want", "(relative 2)"},
		},
		{
			name:    "unexpected packet",
			script:  header + "0 > S 0\n+0 expect none within 300ms\n",
			wantErr: "got S. seq 1000",
		},
		{
			name:    "relative ack before a SYN-ACK",
			script:  header + "0 > . 1 ack 1\n",
			wantErr: "no SYN-ACK was received",
		},
		{
			name:   "event",
			script: header + "flow a sport 40001\n0 expect event syn scanner=zmap tcp.ipid=54321 irregular_reasons~ttl_gt_200 payload~\"GE\" within 300ms\n",
		},
		{
			name:    "event mismatch",
			script:  header + "flow a sport 40001\n0 expect event syn scanner=nmap within 300ms\n",
			wantErr: `the flow's syn events have scanner="zmap"`,
		},
		{
			name:    "destination outside the prefixes",
			script:  "src 192.0.2.100\ndst 192.0.2.1:80\n0 > S 0\n",
			wantErr: "outside the telescope's prefixes",
		},
	}
	events := fakeEvents{{
		"event_type": "syn", "src_ip": "192.0.2.100", "src_port": jsonNumber("40001"),
		"dest_ip": "198.51.100.7", "dest_port": jsonNumber("80"), "scanner": "zmap",
		"tcp":               map[string]any{"ipid": jsonNumber("54321")},
		"irregular_reasons": []any{"ipid_54321", "ttl_gt_200"},
		"payload":           "R0VU",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.pkt", []byte(tc.script))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var out bytes.Buffer
			r := NewRunner(Config{Wire: newFakeTelescope(), Events: events, Out: &out, Prefixes: mustPrefixes("198.51.100.0/24", "2001:db8:5b0::/48"), Seed: 1})
			defer r.Close()
			err = r.Run(context.Background(), s)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Run = %v, want nil\n%s", err, out.String())
			case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Run = %v, want an ErrFailed containing %q\n%s", err, tc.wantErr, out.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestIntoPrefix(t *testing.T) {
	tests := []struct{ prefix, addr, want string }{
		{"198.51.100.0/24", "203.0.113.80", "198.51.100.80"},
		{"2001:db8:5b0::/48", "2001:db8:1:2:3:4:5:6", "2001:db8:5b0:2:3:4:5:6"},
		{"198.51.100.0/25", "10.0.0.200", "198.51.100.72"},
	}
	for _, tc := range tests {
		got := intoPrefix(mustPrefixes(tc.prefix)[0], mustAddr(tc.addr))
		if got.String() != tc.want {
			t.Errorf("intoPrefix(%s, %s) = %s, want %s", tc.prefix, tc.addr, got, tc.want)
		}
	}
}
