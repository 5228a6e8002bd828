package assemble

import (
	"bytes"
	"testing"
)

func TestStatusLine(t *testing.T) {
	var out bytes.Buffer
	s := NewStatusLine(&out, 20)
	s.Write([]byte("before\n"))
	s.Set("12% ETA 3s | files 1/4")
	s.Write([]byte("INF batch\n"))
	s.Set("50%")
	s.Done()
	s.Write([]byte("INF done\n"))
	want := "before\n" +
		"\r\x1b[K12% ETA 3s | files " + // cut to 19 columns
		"\r\x1b[KINF batch\n12% ETA 3s | files " + // the log line above, the status below
		"\r\x1b[K50%" +
		"\r\x1b[K" + // erased at the end
		"INF done\n"
	if got := out.String(); got != want {
		t.Errorf("terminal got %q\nwant %q", got, want)
	}
}

func TestFit(t *testing.T) {
	for _, c := range []struct {
		line  string
		width int
		want  string
	}{
		{"abc", 80, "abc"}, {"abcdef", 4, "abc"}, {"äöüß", 3, "äö"}, {"x", 1, ""}, {"x", 0, ""},
	} {
		if got := fit(c.line, c.width); got != c.want {
			t.Errorf("fit(%q, %d) = %q, want %q", c.line, c.width, got, c.want)
		}
	}
}
