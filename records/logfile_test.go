package records

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

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

func TestReadLogLines(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "t.events.20260101-00.jsonl.gz")
	writeGzip(t, name, "a\n\n", "bad\nc")
	var got []string
	errBad := errors.New("bad line")
	err := ReadLogLines(name, LineOptions{DropPartial: true}, func(line []byte) error {
		if string(line) == "bad" {
			return errBad
		}
		got = append(got, string(line))
		return nil
	})
	// The blank line 2 is skipped; line 3 fails, and the error names it.
	if !errors.Is(err, errBad) || !strings.Contains(err.Error(), name+":3: ") {
		t.Fatalf("got %v, want %v at %s:3", err, errBad, name)
	}
	if want := []string{"a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lines before the error: got %q, want %q", got, want)
	}
	got = nil
	if err := ReadLogLines(name, LineOptions{DropPartial: true}, func(line []byte) error {
		got = append(got, string(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "bad"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q (the partial last line dropped)", got, want)
	}
	if err := ReadLogLines(filepath.Join(dir, "missing"), LineOptions{}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want os.ErrNotExist", err)
	}
}
