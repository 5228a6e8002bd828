// Package urls finds the downloader commands in scanner payloads and the
// URLs they fetch: the rules of Spoki's `clean` (described below) with its
// bugs fixed, plus the downloader forms seen in the wild. It is a pure
// function of the payload, used offline by `spoki urls` and later by the
// live telescope; it imports nothing of spoki.
//
// The payload is cleaned as clean_pl does (unquote_plus, then the shell
// separators, quotes and brackets become spaces, backslashes go), split at
// every occurrence of a tool name (wget, curl, tftp, ftpget), and each piece
// is parsed like the tool's command line. Fixed against the original:
//   - https:// stays https (port 443), ftp:// and tftp:// URLs keep their
//     scheme and default port (21, 69); a port is always a number, and a URL
//     with a port that is not one is no URL.
//   - Quotes, brackets and angle brackets end a URL (the original kept a
//     trailing `"`); runs of spaces collapse fully.
//   - The server is the host without userinfo and port, an IPv6 literal
//     without its brackets; the name is the last segment of the path ("" if
//     there is none; the original took the last segment of the whole URL,
//     which could be the host).
//   - The option parsers know the value-taking options of real wget and
//     curl (-O FILE, -o FILE, -P DIR, -U AGENT, -H HEADER, ...), so an option
//     value is never taken for the URL; a missing URL or option value gives
//     no URL instead of killing the process.
//   - Each (tool, URL) is reported once per payload.
//
// Added forms: `tftp -g -r FILE HOST [PORT]` and `tftp HOST -c get FILE`
// (tftp://HOST/FILE), busybox `ftpget [-u U -p P -P PORT] HOST [LOCAL]
// REMOTE` (ftp://HOST/REMOTE), `busybox wget|tftp|curl`, `curl -o FILE URL`,
// `wget -O- URL | sh`, `${IFS}` and `$IFS` separators, URL-encoded commands
// in HTTP request lines and bodies, and IPv6 literal hosts.
package urls

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Download is one URL a downloader command in a payload fetches.
type Download struct {
	// Tool is the downloader: wget, curl, tftp or ftpget.
	Tool string
	// URL is the normalised URL (scheme always present).
	URL string
	// Server is the host: a name or an IP address (IPv6 without brackets).
	Server string
	// Port is the port, explicit or the scheme's default.
	Port int
	// Name is the last segment of the URL's path, "" if none.
	Name string
}

// String formats d as `spoki urls` prints it: tool|url|server|port|name.
func (d Download) String() string {
	return d.Tool + "|" + d.URL + "|" + d.Server + "|" + strconv.Itoa(d.Port) + "|" + d.Name
}

// maxPayload caps the bytes looked at: payloads are capped by the
// telescope anyway, and the cap bounds the work per call.
const maxPayload = 64 << 10

// tools are the downloaders looked for, in this order.
var tools = [...]string{"wget", "curl", "tftp", "ftpget"}

// Extract returns the downloads in payload, in the order of the tools and
// then of their occurrence. It never panics and returns nil if there are
// none.
func Extract(payload []byte) []Download {
	if len(payload) > maxPayload {
		payload = payload[:maxPayload]
	}
	pl := clean(string(payload))
	var out []Download
	seen := map[string]bool{}
	for _, tool := range tools {
		if !strings.Contains(pl, tool) {
			continue
		}
		s := pl
		if tool == "curl" {
			// What the original removes so that curl's own user agent
			// is not taken for a command.
			s = strings.ReplaceAll(s, "User-Agent: curl", " ")
			s = strings.ReplaceAll(s, " libcurl/", " ")
		}
		for _, piece := range pieces(s, tool) {
			d, ok := parsePiece(tool, piece)
			if !ok || seen[tool+"|"+d.URL] {
				continue
			}
			seen[tool+"|"+d.URL] = true
			out = append(out, d)
		}
	}
	return out
}

// clean is the original's clean_pl with the fixes of the package doc.
func clean(s string) string {
	s = unquotePlus(s)
	s = strings.NewReplacer(
		"${IFS}", " ", "$IFS$9", " ", "$IFS", " ",
		";", " ", "`", " ", "+", " ", "\r", " ", "\n", " ", "\t", " ",
		`\r`, " ", `\n`, " ", `\t`, " ",
		"'", " ", `"`, " ", "(", " ", ")", " ", "<", " ", ">", " ", "&", " ", "{", " ", "}", " ",
		// A pipe ends the arguments of a downloader, attached or not.
		"|", " | ",
	).Replace(s)
	s = strings.ReplaceAll(s, `\`, "")
	s = strings.ReplaceAll(s, "http:// ", "http://")
	s = strings.ReplaceAll(s, "https:// ", "https://")
	return strings.Join(strings.Fields(s), " ")
}

// unquotePlus is Python's unquote_plus: '+' is a space and %XX a byte; the
// bytes are read as UTF-8 with U+FFFD for invalid sequences.
func unquotePlus(s string) string {
	if !strings.ContainsAny(s, "+%") && utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return validUTF8(b)
}

// validUTF8 replaces each invalid byte with U+FFFD, as Python's
// decode(errors="replace") does for these inputs.
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		sb.WriteRune(r) // RuneError for an invalid byte, n == 1
		b = b[n:]
	}
	return sb.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// pieces splits s at every occurrence of tool; each piece holds the
// arguments after the tool name up to the next occurrence.
func pieces(s, tool string) []string {
	var out []string
	for {
		i := strings.Index(s, tool)
		if i < 0 {
			return out
		}
		s = s[i+len(tool):]
		j := strings.Index(s, tool)
		if j < 0 {
			return append(out, s)
		}
		out = append(out, s[:j])
	}
}

// optSpec says which options of a tool take a value; a trailing '=' marks
// a long option. Unknown options are taken as flags, as argparse's
// parse_known_args does.
type optSpec struct {
	short string   // letters of value-taking short options
	long  []string // value-taking long options, without "--"
}

var specs = map[string]optSpec{
	// -g (Spoki's "ghost" host), -l and -r are the original's; the rest are
	// GNU wget's and busybox wget's value-taking options.
	"wget": {short: "glrOUPoaTtewYQB", long: []string{"ghost", "local-path", "remote-path", "output-document",
		"user-agent", "directory-prefix", "output-file", "append-output", "timeout", "tries", "execute", "wait",
		"header", "post-data", "post-file", "referer", "user", "password", "http-user", "http-password",
		"proxy-user", "proxy-password", "bind-address", "dns-timeout", "connect-timeout", "read-timeout", "limit-rate", "quota"}},
	"curl": {short: "oAHeuxXdmrEbcCDKTYyzwQP", long: []string{"output", "user-agent", "header", "referer", "user", "proxy",
		"request", "data", "data-binary", "data-raw", "data-urlencode", "max-time", "connect-timeout", "retry", "range",
		"cert", "cookie", "cookie-jar", "continue-at", "dump-header", "config", "upload-file", "form", "url", "write-out", "interface", "resolve"}},
	"tftp":   {short: "lrbc", long: nil},
	"ftpget": {short: "upP", long: []string{"username", "password", "port"}},
}

// args is a parsed command line: option values by option (short letter or
// long name) and the positional arguments.
type args struct {
	opts map[string]string
	pos  []string
}

// parseArgs parses the tokens of one piece like a getopt/argparse command
// line. It stops at the first shell operator (a lone '|', "||", "&&").
func parseArgs(tool string, toks []string) (args, bool) {
	sp := specs[tool]
	a := args{opts: map[string]string{}}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t == "|" || t == "||" || t == "&&" || strings.HasPrefix(t, "|"):
			return a, true
		case strings.HasPrefix(t, "--") && len(t) > 2:
			name, val, hasVal := strings.Cut(t[2:], "=")
			full, takes := matchLong(sp.long, name)
			if !takes {
				continue // unknown or a flag
			}
			if !hasVal {
				if i+1 >= len(toks) {
					return a, false // missing value
				}
				i++
				val = toks[i]
			}
			a.opts[full] = val
		case strings.HasPrefix(t, "-") && len(t) > 1:
			// A cluster of short options: flags until one takes a value,
			// which is the rest of the cluster or the next token.
			for k := 1; k < len(t); k++ {
				c := t[k]
				if !strings.ContainsRune(sp.short, rune(c)) {
					continue
				}
				val := t[k+1:]
				if val == "" {
					if i+1 >= len(toks) {
						return a, false
					}
					i++
					val = toks[i]
				}
				a.opts[string(c)] = val
				break
			}
		default:
			a.pos = append(a.pos, t)
		}
	}
	return a, true
}

// matchLong resolves name to a value-taking long option, also as an
// unambiguous prefix (as argparse does).
func matchLong(long []string, name string) (string, bool) {
	found := ""
	for _, l := range long {
		if l == name {
			return l, true
		}
		if strings.HasPrefix(l, name) {
			if found != "" {
				return "", false
			}
			found = l
		}
	}
	return found, found != ""
}

// parsePiece finds the URL of one tool invocation.
func parsePiece(tool, piece string) (Download, bool) {
	toks := strings.Fields(piece)
	if len(toks) == 0 {
		return Download{}, false
	}
	// The original returns a first token that is a URL as it is.
	if tool == "wget" || tool == "curl" {
		if d, ok := makeURL(tool, toks[0], "http"); ok && strings.Contains(toks[0], "://") {
			return d, true
		}
	}
	a, ok := parseArgs(tool, toks)
	if !ok {
		return Download{}, false
	}
	switch tool {
	case "wget":
		raw := ""
		switch {
		case a.opts["g"] != "" || a.opts["ghost"] != "":
			raw = first(a.opts["g"], a.opts["ghost"])
		case len(a.pos) > 0:
			raw = a.pos[0]
		default:
			return Download{}, false
		}
		if rp := first(a.opts["r"], a.opts["remote-path"]); rp != "" {
			raw = joinPath(raw, rp)
		}
		return makeURL(tool, raw, "http")
	case "curl":
		if u := a.opts["url"]; u != "" {
			return makeURL(tool, u, "http")
		}
		if len(a.pos) == 0 {
			return Download{}, false
		}
		return makeURL(tool, a.pos[0], "http")
	case "tftp":
		// busybox: tftp [-g|-p] -l LOCAL -r REMOTE HOST [PORT];
		// classic: tftp HOST -c get FILE.
		if len(a.pos) == 0 {
			return Download{}, false
		}
		host, file := a.pos[0], first(a.opts["r"], a.opts["l"])
		port := ""
		rest := a.pos[1:]
		if c := a.opts["c"]; c == "get" && len(rest) > 0 {
			file, rest = rest[0], rest[1:]
		}
		if len(rest) > 0 && isPort(rest[0]) {
			port = rest[0]
		}
		if file == "" {
			return Download{}, false
		}
		return makeURL(tool, "tftp://"+hostPort(host, port)+"/"+strings.TrimPrefix(file, "/"), "tftp")
	case "ftpget":
		// busybox: ftpget [-c] [-v] [-u USER] [-p PASS] [-P PORT] HOST
		// [LOCAL_FILE] REMOTE_FILE (a lone file is both).
		if len(a.pos) < 2 {
			return Download{}, false
		}
		remote := a.pos[len(a.pos)-1]
		if len(a.pos) > 3 {
			remote = a.pos[2]
		}
		port := first(a.opts["P"], a.opts["port"])
		return makeURL(tool, "ftp://"+hostPort(a.pos[0], port)+"/"+strings.TrimPrefix(remote, "/"), "ftp")
	}
	return Download{}, false
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// joinPath appends a remote path as the original does: with a '/' unless
// one side already has it.
func joinPath(u, p string) string {
	if strings.HasSuffix(u, "/") || strings.HasPrefix(p, "/") {
		return u + p
	}
	return u + "/" + p
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

// hostPort joins a host (an IPv6 literal gets brackets) and an optional
// port.
func hostPort(host, port string) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	if port != "" {
		return host + ":" + port
	}
	return host
}

var defaultPorts = map[string]int{"http": 80, "https": 443, "ftp": 21, "tftp": 69}

// makeURL normalises raw into a Download: a missing scheme becomes
// defScheme, the host must be a name or an IP address, and the port a
// number.
func makeURL(tool, raw, defScheme string) (Download, bool) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = defScheme, raw
	} else {
		scheme = strings.ToLower(scheme)
	}
	defPort, known := defaultPorts[scheme]
	if !known {
		return Download{}, false
	}
	// The authority ends at the first '/', '?' or '#'.
	end := strings.IndexAny(rest, "/?#")
	auth, path := rest, ""
	if end >= 0 {
		auth, path = rest[:end], rest[end:]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:] // userinfo is not part of the server
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		j := strings.IndexByte(auth, ']')
		if j < 0 {
			return Download{}, false
		}
		host = auth[1:j]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return Download{}, false
		}
		after := auth[j+1:]
		if after != "" {
			if after[0] != ':' {
				return Download{}, false
			}
			port = after[1:]
		}
	} else if i := strings.LastIndexByte(auth, ':'); i >= 0 {
		if strings.Count(auth, ":") > 1 {
			// A bare IPv6 literal without brackets: take it whole.
			if _, err := netip.ParseAddr(auth); err != nil {
				return Download{}, false
			}
		} else {
			host, port = auth[:i], auth[i+1:]
		}
	}
	if !validHost(host, ok) {
		return Download{}, false
	}
	p := defPort
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 || port[0] == '+' || port[0] == '-' {
			return Download{}, false
		}
		p = n
	}
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if port != "" {
		hp += ":" + port
	}
	u := scheme + "://" + hp + path
	name := path
	if i := strings.IndexAny(name, "?#"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return Download{Tool: tool, URL: u, Server: host, Port: p, Name: name}, true
}

// validHost accepts an IP address or a DNS name of letters, digits, '-',
// '_' and '.' with at least one letter or dot (so an option value such as
// "-" or a bare word is not a host). It also accepts `localhost` and,
// after an explicit scheme, the dotless numeric IPv4 spellings that
// inet_aton reads and wget and curl connect to (http://2130706433/,
// http://0x7f000001/): they are the attacker's targets too, and the
// downloader refuses them by address.
func validHost(h string, explicitScheme bool) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return !strings.Contains(h, "%")
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	if explicitScheme && numericHost(h) {
		return true
	}
	dot := false
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			dot = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dot && h[0] != '.' && h[0] != '-'
}

// numericHost reports a dotless number as inet_aton reads it: decimal,
// octal (leading 0) or hex (0x).
func numericHost(h string) bool {
	if len(h) > 2 && (h[:2] == "0x" || h[:2] == "0X") {
		_, err := strconv.ParseUint(h[2:], 16, 32)
		return err == nil
	}
	if h[0] == '0' && len(h) > 1 {
		_, err := strconv.ParseUint(h[1:], 8, 32)
		return err == nil
	}
	_, err := strconv.ParseUint(h, 10, 32)
	return err == nil
}
