package records

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// collect reads r with ReadLines and returns "n:line" for every line and
// "n:long" for every skipped one.
func collect(t *testing.T, r io.Reader, o LineOptions) ([]string, error) {
	t.Helper()
	var got []string
	if o.Long != nil {
		o.Long = func(n int) error { got = append(got, fmt.Sprintf("%d:long", n)); return nil }
	}
	err := ReadLines(r, o, func(n int, line []byte) error {
		got = append(got, fmt.Sprintf("%d:%s", n, line))
		return nil
	})
	return got, err
}

func TestReadLinesPartialLastLine(t *testing.T) {
	in := "a\n\nb\r\nc"
	got, err := collect(t, strings.NewReader(in), LineOptions{})
	if want := []string{"1:a", "2:", "3:b\r", "4:c"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("kept: got %q, %v; want %q", got, err, want)
	}
	got, err = collect(t, strings.NewReader(in), LineOptions{DropPartial: true})
	if want := []string{"1:a", "2:", "3:b\r"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("dropped: got %q, %v; want %q", got, err, want)
	}
}

func TestReadLinesLongLines(t *testing.T) {
	// The long line is longer than the read buffer too, so it is gathered
	// from several chunks before it is found too long.
	long := strings.Repeat("x", 3*logBuffer)
	in := "a\n" + long + "\nb\n" + long
	got, err := collect(t, strings.NewReader(in), LineOptions{Max: 2 * logBuffer, Long: func(int) error { return nil }})
	if want := []string{"1:a", "2:long", "3:b", "4:long"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("skipped: got %q, %v; want %q", got, err, want)
	}
	if _, err := collect(t, strings.NewReader(in), LineOptions{Max: 2 * logBuffer}); !errors.Is(err, bufio.ErrTooLong) {
		t.Fatalf("without Long: got %v, want bufio.ErrTooLong", err)
	}
	// Without a cap the long line is passed whole.
	var lens []int
	err = ReadLines(strings.NewReader(in), LineOptions{}, func(_ int, line []byte) error {
		lens = append(lens, len(line))
		return nil
	})
	if want := []int{1, len(long), 1, len(long)}; err != nil || !reflect.DeepEqual(lens, want) {
		t.Fatalf("no cap: got lengths %v, %v; want %v", lens, err, want)
	}
}

func TestReadLinesErrors(t *testing.T) {
	boom := errors.New("boom")
	// A read error: the partial line is passed (unless dropped), then the
	// error is returned.
	r := io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom))
	got, err := collect(t, r, LineOptions{})
	if want := []string{"1:a", "2:b"}; !errors.Is(err, boom) || !reflect.DeepEqual(got, want) {
		t.Fatalf("read error: got %q, %v; want %q, %v", got, err, want, boom)
	}
	r = io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom))
	got, err = collect(t, r, LineOptions{DropPartial: true})
	if want := []string{"1:a"}; !errors.Is(err, boom) || !reflect.DeepEqual(got, want) {
		t.Fatalf("read error, dropped: got %q, %v; want %q, %v", got, err, want, boom)
	}
	// fn's error ends the read.
	n := 0
	err = ReadLines(strings.NewReader("a\nb\n"), LineOptions{}, func(int, []byte) error { n++; return boom })
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("fn error: got %v after %d lines, want %v after 1", err, n, boom)
	}
}

// writeGzip writes the members to path, each one gzip member.
func writeGzip(t *testing.T, path string, members ...string) {
	t.Helper()
	var b bytes.Buffer
	for _, m := range members {
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(m))
		zw.Close()
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, open func(string) (io.ReadCloser, error), path string) string {
	t.Helper()
	rc, err := open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestOpenLog(t *testing.T) {
	dir := t.TempDir()
	gz := filepath.Join(dir, "t.events.20260101-00.jsonl.gz")
	writeGzip(t, gz, "a\n", "b\n") // two members, as an append makes
	plain := filepath.Join(dir, "t.events.20260101-01.jsonl")
	os.WriteFile(plain, []byte("c\n"), 0o644)
	hidden := filepath.Join(dir, "t.events.20260101-02.jsonl") // gzip under a plain name
	writeGzip(t, hidden, "d\n")

	for _, open := range []func(string) (io.ReadCloser, error){OpenLog, OpenLogSniffed} {
		if got := readAll(t, open, gz); got != "a\nb\n" {
			t.Errorf("gzip: got %q, want both members", got)
		}
		if got := readAll(t, open, plain); got != "c\n" {
			t.Errorf("plain: got %q", got)
		}
	}
	if got := readAll(t, OpenLogSniffed, hidden); got != "d\n" {
		t.Errorf("sniffed gzip under a plain name: got %q", got)
	}
	if got := readAll(t, OpenLog, hidden); got == "d\n" {
		t.Errorf("OpenLog decompressed a file not named .gz")
	}
	bad := filepath.Join(dir, "bad.jsonl.gz")
	os.WriteFile(bad, []byte("not gzip\n"), 0o644)
	if _, err := OpenLog(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad gzip: got %v, want an error naming the file", err)
	}

	files, err := EventLogFiles(dir, "t")
	if want := []string{plain, hidden, gz}; err != nil || !reflect.DeepEqual(files, want) {
		t.Errorf("EventLogFiles: got %q, %v; want %q", files, err, want)
	}
}
