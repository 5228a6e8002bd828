package records

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
