package redis

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "redis" object of a session event.
type Detail struct {
	// Commands holds the commands received, in order, each as its
	// arguments (the command name first, as sent).
	Commands [][]string `json:"commands"`
	// Truncated is set when a cap cut a command, an argument, or the
	// list of commands.
	Truncated bool `json:"truncated"`
}

// Serve implements handlers.Handler: it reads, records and answers
// commands until the client hangs up, falls silent for ReadTimeout, sends
// QUIT, or reaches MaxCommands, and resets the connection (unless it quit).
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	quit := false
	defer func() {
		if !quit { // end like Spoki; after QUIT, let the client read its +OK
			_ = c.Reset()
		}
	}()
	d := Detail{Commands: [][]string{}}
	if c.First() == nil {
		return d, nil // Redis never speaks first: a silent client gets nothing
	}
	r := bufio.NewReaderSize(c, maxInlineSize)
	for ctx.Err() == nil {
		if len(d.Commands) == h.maxCommands {
			d.Truncated = true
			return d, nil
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		args, cut, err := ReadCommand(r, h.maxArgs, h.maxArgBytes)
		if len(args) > 0 {
			d.Commands = append(d.Commands, args)
		}
		d.Truncated = d.Truncated || cut
		if err != nil {
			return d, endErr(err)
		}
		if len(args) == 0 {
			continue
		}
		var resp []byte
		resp, quit = Reply(args)
		if _, err := c.Write(resp); err != nil {
			return d, endErr(err)
		}
		if quit {
			return d, nil
		}
	}
	return d, nil
}

// endErr maps the error that ended the exchange to Serve's result: the
// client's hang-up and the handler's own read timeout are normal ends.
func endErr(err error) error { return handlers.EndErr("redis", err, ErrMalformed) }

// infoServer is the INFO reply: enough of a Redis 5 on Linux for the usual
// checks (version, OS, role) to pass.
const infoServer = "# Server\r\n" +
	"redis_version:5.0.7\r\n" +
	"redis_git_sha1:00000000\r\n" +
	"redis_git_dirty:0\r\n" +
	"redis_build_id:66bd629f924ac924\r\n" +
	"redis_mode:standalone\r\n" +
	"os:Linux 5.4.0-169-generic x86_64\r\n" +
	"arch_bits:64\r\n" +
	"multiplexing_api:epoll\r\n" +
	"gcc_version:9.3.0\r\n" +
	"process_id:1021\r\n" +
	"tcp_port:6379\r\n" +
	"uptime_in_seconds:8639482\r\n" +
	"uptime_in_days:99\r\n" +
	"executable:/usr/bin/redis-server\r\n" +
	"config_file:/etc/redis/redis.conf\r\n" +
	"\r\n" +
	"# Replication\r\n" +
	"role:master\r\n" +
	"connected_slaves:0\r\n"

// configValues answers CONFIG GET for the parameters attackers read before
// rewriting them.
var configValues = map[string]string{
	"dir":            "/var/lib/redis",
	"dbfilename":     "dump.rdb",
	"requirepass":    "",
	"protected-mode": "no",
}

// Reply returns the RESP answer to the command args (non-empty), and
// whether the client asked to quit. It is a pure function of args.
func Reply(args []string) (resp []byte, quit bool) {
	cmd := strings.ToUpper(args[0])
	sub := ""
	if len(args) > 1 {
		sub = strings.ToUpper(args[1])
	}
	switch cmd {
	case "PING":
		if len(args) > 1 {
			return bulk(args[1]), false
		}
		return []byte("+PONG\r\n"), false
	case "ECHO":
		if len(args) > 1 {
			return bulk(args[1]), false
		}
	case "QUIT":
		return []byte("+OK\r\n"), true
	case "INFO":
		return bulk(infoServer), false
	case "SET", "SLAVEOF", "REPLICAOF", "SAVE", "BGSAVE", "FLUSHALL", "FLUSHDB",
		"SELECT", "AUTH", "CLIENT", "MODULE":
		return []byte("+OK\r\n"), false
	case "CONFIG":
		switch sub {
		case "SET", "RESETSTAT", "REWRITE":
			return []byte("+OK\r\n"), false
		case "GET":
			if len(args) > 2 {
				if v, ok := configValues[strings.ToLower(args[2])]; ok {
					return append(append([]byte("*2\r\n"), bulk(strings.ToLower(args[2]))...), bulk(v)...), false
				}
			}
			return []byte("*0\r\n"), false
		}
	case "KEYS", "COMMAND", "SCAN":
		if cmd == "SCAN" {
			return []byte("*2\r\n$1\r\n0\r\n*0\r\n"), false
		}
		return []byte("*0\r\n"), false
	case "GET":
		return []byte("$-1\r\n"), false
	case "DEL", "EXISTS", "DBSIZE", "EXPIRE":
		return []byte(":0\r\n"), false
	}
	// Redis's own wording, so that fingerprinting scripts see a real server.
	var b strings.Builder
	fmt.Fprintf(&b, "-ERR unknown command `%s`, with args beginning with: ", oneLine(args[0]))
	for _, a := range args[1:] {
		fmt.Fprintf(&b, "`%s`, ", oneLine(a))
	}
	b.WriteString("\r\n")
	return []byte(b.String()), false
}

// bulk encodes s as a RESP bulk string.
func bulk(s string) []byte {
	b := make([]byte, 0, len(s)+16)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// oneLine keeps an echoed argument from breaking the RESP error line, and
// short: it is the attacker's data going back out.
func oneLine(s string) string {
	if len(s) > 128 {
		s = s[:128]
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
