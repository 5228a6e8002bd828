package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/analysis/download"
	"github.com/spoki-telescope/spoki/analysis/urls"
)

func TestTermSafe(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "http://1.2.3.4/x.sh", "http://1.2.3.4/x.sh"},
		{"clear screen", "http://1.2.3.4/\x1b[2J", `http://1.2.3.4/\x1b[2J`},
		{"carriage return", "ok\rEVIL", `ok\x0dEVIL`},
		{"newline and tab", "a\nb\tc", `a\x0ab\x09c`},
		{"bell", "ding\a", `ding\x07`},
		{"nul", "a\x00b", `a\x00b`},
		{"del", "a\x7fb", `a\x7fb`},
		{"C1 CSI", "a\u009b2Jb", `a\u009b2Jb`},
		{"C1 OSC", "\u009d0;title\u009c", `\u009d0;title\u009c`},
		{"invalid utf-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"lone C1 byte", "a\x9bb", `a\x9bb`},
		{"truncated rune", "a\xe2\x82", `a\xe2\x82`},
		{"bidi override", "evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"backslash", `a\x1b`, `a\\x1b`},
		{"printable unicode kept", "déjà vu ☃", "déjà vu ☃"},
		{"replacement char kept", "\ufffd", "\ufffd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := termSafe(tc.in)
			if got != tc.want {
				t.Errorf("termSafe(%q) = %q, want %q", tc.in, got, tc.want)
			}
			for _, c := range []byte(got) {
				if c < 0x20 || c == 0x7f {
					t.Errorf("termSafe(%q) = %q keeps control byte %#x", tc.in, got, c)
				}
			}
		})
	}
}

// TestPrintersEscape runs the printers of spoki urls and spoki download on
// hostile bytes: no control byte reaches the output.
func TestPrintersEscape(t *testing.T) {
	hostile := "wget http://1.2.3.4/\x1b[2J\x07\u009b\xff.sh"
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := printURLs(w, hostile, false); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	ds := urls.Extract([]byte(hostile))
	if len(ds) != 1 {
		t.Fatalf("Extract gave %v", ds)
	}
	r := download.Result{Target: download.Target{Download: ds[0]}, Kind: download.KindError,
		Status: "404 Client Error: Not Found for url: " + ds[0].URL}
	downloadPrintResult(&b, r, time.Hour)
	out := b.String()
	for _, c := range []byte(out) {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			t.Fatalf("output keeps control byte %#x: %q", c, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b") || !strings.Contains(out, `\x1b[2J\x07`) {
		t.Errorf("output %q is not escaped", out)
	}
	if strings.Count(out, "\n") != 2 {
		t.Errorf("output %q: want two lines", out)
	}
}
