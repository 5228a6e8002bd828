package telnet

import (
	"strconv"
	"strings"
)

// Shell is the minimal BusyBox ash that answers the usual bot probes. It
// is a pure function of the lines it runs plus a tiny in-memory file store
// (what `echo ... > FILE` wrote, for a later `cat FILE`), capped at
// maxFiles files of maxFileBytes. Its zero value is ready; it is not safe
// for concurrent use. Nothing it runs touches the host.
type Shell struct {
	files map[string]string
}

// Caps of the in-memory file store.
const (
	maxFiles     = 16
	maxFileBytes = 4 << 10
	// maxOutBytes caps one line's answer.
	maxOutBytes = 16 << 10
)

// Run runs one command line and returns what the shell prints (CRLF line
// ends) and whether the line ends the session (exit, logout, quit).
func (s *Shell) Run(line string) (out string, exit bool) {
	var b strings.Builder
	for _, cmd := range splitCommands(line) {
		words := splitWords(cmd)
		if len(words) == 0 {
			continue
		}
		words, redir, appendTo := redirection(words)
		if len(words) == 0 {
			continue
		}
		o, ex := s.run(words)
		if redir != "" {
			s.write(redir, o, appendTo)
			o = ""
		}
		if b.Len()+len(o) <= maxOutBytes {
			b.WriteString(o)
		}
		if ex {
			return crlf(b.String()), true
		}
	}
	return crlf(b.String()), false
}

// crlf turns the LF line ends of out into CRLF, as a terminal expects.
func crlf(out string) string { return strings.ReplaceAll(out, "\n", "\r\n") }

func (s *Shell) write(path, data string, appendTo bool) {
	if s.files == nil {
		s.files = map[string]string{}
	}
	if _, ok := s.files[path]; !ok && len(s.files) >= maxFiles {
		return
	}
	if appendTo {
		data = s.files[path] + data
	}
	if len(data) > maxFileBytes {
		data = data[:maxFileBytes]
	}
	s.files[path] = data
}

// applets are the BusyBox applets the shell knows; any other name after
// `busybox` is "applet not found", the answer Mirai looks for.
var applets = map[string]bool{
	"cat": true, "echo": true, "wget": true, "tftp": true, "ftpget": true, "ps": true, "uname": true,
	"rm": true, "cp": true, "chmod": true, "mkdir": true, "cd": true, "kill": true, "sh": true, "ls": true,
	"mount": true, "free": true, "nproc": true, "id": true, "whoami": true, "sleep": true, "true": true,
}

func (s *Shell) run(w []string) (string, bool) {
	name := w[0]
	if name == "busybox" || strings.HasSuffix(name, "/busybox") {
		if len(w) == 1 {
			return "BusyBox v1.22.1 (2017-02-15 13:45:22 CST) multi-call binary.\n", false
		}
		if !applets[w[1]] {
			return w[1] + ": applet not found\n", false
		}
		w = w[1:]
		name = w[0]
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 && i < len(name)-1 && name != "/proc/mounts" {
		name = name[i+1:] // /bin/echo runs echo
	}
	switch name {
	case "exit", "logout", "quit":
		return "", true
	case "enable", "system", "shell", "sh", "ash", "bash", "linuxshell", "cd", "rm", "cp", "chmod", "mkdir",
		"kill", "export", "ulimit", "true", ":", "sleep", "mount", "unset", "history", "dd":
		return "", false
	case "help":
		return "Built-in commands:\n-------------------\n\t. : [ [[ alias bg break cd chdir command continue echo eval exec exit export false fg getopts hash help history jobs kill let local printf pwd read readonly return set shift source test times trap true type ulimit umask unalias unset wait\n", false
	case "echo":
		return echo(w[1:]), false
	case "cat":
		return s.cat(w[1:]), false
	case "uname":
		if len(w) > 1 && strings.Contains(w[1], "a") {
			return "Linux localhost 3.10.14 #1 PREEMPT Wed Feb 15 13:51:07 CST 2017 armv7l GNU/Linux\n", false
		}
		if len(w) > 1 && strings.Contains(w[1], "m") {
			return "armv7l\n", false
		}
		return "Linux\n", false
	case "ps":
		return "  PID USER       VSZ STAT COMMAND\n    1 root      1532 S    init\n  412 root      1536 S    /usr/sbin/telnetd\n  418 root      1540 S    -sh\n", false
	case "id", "whoami":
		if name == "whoami" {
			return "root\n", false
		}
		return "uid=0(root) gid=0(root)\n", false
	case "nproc":
		return "1\n", false
	case "free":
		return "             total       used       free     shared    buffers\nMem:         60456      38616      21840          0       2052\n", false
	case "ls":
		return "bin   dev   etc   lib   mnt   proc  root  sbin  sys   tmp   usr   var\n", false
	case "wget":
		return "wget: can't connect to remote host: Connection refused\n", false
	case "curl":
		return "curl: (7) Failed to connect: Connection refused\n", false
	case "tftp":
		return "tftp: timeout\n", false
	case "ftpget":
		return "ftpget: can't connect to remote host: Connection refused\n", false
	}
	return "-sh: " + name + ": not found\n", false
}

const procMounts = `rootfs / rootfs rw 0 0
/dev/root / squashfs ro,relatime 0 0
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
tmpfs /dev tmpfs rw,relatime,size=30228k 0 0
tmpfs /tmp tmpfs rw,relatime,size=30228k 0 0
devpts /dev/pts devpts rw,relatime,mode=600 0 0
/dev/mtdblock3 /mnt/mtd jffs2 rw,relatime 0 0
`

const procCPUInfo = `processor	: 0
model name	: ARMv7 Processor rev 5 (v7l)
BogoMIPS	: 38.40
Features	: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm
Hardware	: Generic DT based system
`

func (s *Shell) cat(args []string) string {
	var b strings.Builder
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		switch a {
		case "/proc/mounts":
			b.WriteString(procMounts)
		case "/proc/cpuinfo":
			b.WriteString(procCPUInfo)
		default:
			if data, ok := s.files[a]; ok {
				b.WriteString(data)
			} else {
				b.WriteString("cat: can't open '" + a + "': No such file or directory\n")
			}
		}
	}
	return b.String()
}

// echo implements BusyBox echo with -n and -e (\xHH, \NNN octal, \n, \t,
// \r, \\).
func echo(args []string) string {
	newline, escapes := true, false
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' && strings.Trim(args[0][1:], "neE") == "" {
		if strings.Contains(args[0], "n") {
			newline = false
		}
		if strings.Contains(args[0], "e") {
			escapes = true
		}
		args = args[1:]
	}
	out := strings.Join(args, " ")
	if escapes {
		out = unescape(out)
	}
	if newline {
		out += "\n"
	}
	return out
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\':
			b.WriteByte('\\')
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && isHex(s[j]) {
				j++
			}
			if j == i+1 {
				b.WriteString(`\x`)
				continue
			}
			v, _ := strconv.ParseUint(s[i+1:j], 16, 8)
			b.WriteByte(byte(v))
			i = j - 1
		case '0':
			j := i + 1
			for j < len(s) && j < i+4 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint("0"+s[i+1:j], 8, 16)
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// splitCommands splits a line at ;, &&, || and | outside quotes. A pipe
// runs both sides and prints both outputs, which is close enough for the
// probes bots send.
func splitCommands(line string) []string {
	var out []string
	var quote byte
	start := 0
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';' || c == '|' || c == '&':
			out = append(out, line[start:i])
			if i+1 < len(line) && (line[i+1] == '|' || line[i+1] == '&') && c != ';' {
				i++
			}
			start = i + 1
		}
	}
	return append(out, line[start:])
}

// splitWords splits a command into words at blanks, removing quotes.
func splitWords(cmd string) []string {
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// redirection removes a final `> FILE`, `>FILE`, `>> FILE` from words and
// returns the file.
func redirection(words []string) (rest []string, file string, appendTo bool) {
	for i, w := range words {
		if !strings.HasPrefix(w, ">") {
			continue
		}
		appendTo = strings.HasPrefix(w, ">>")
		file = strings.TrimLeft(w, ">")
		if file == "" && i+1 < len(words) {
			file = words[i+1]
		}
		return words[:i], file, appendTo
	}
	return words, "", false
}
