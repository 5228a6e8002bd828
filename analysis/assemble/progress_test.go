package assemble

import (
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	hour := time.Date(2021, 10, 13, 22, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		p       Progress
		elapsed time.Duration
		want    string
	}{
		{"known input: share and ETA from the bytes",
			Progress{FilesOpened: 3, FilesTotal: 8, Rows: 1_234_567, BytesRead: 250 << 20, BytesTotal: 1000 << 20, Hour: hour, Records: 12_345},
			10 * time.Second,
			"25% ETA 30s | files 3/8 | 1.23M rows, 123k/s | hour 2021-10-13T22 | 12.3k records"},
		{"following: no total, no ETA",
			Progress{FilesOpened: 5, Rows: 999, Hour: hour},
			2 * time.Second,
			"files 5 | 999 rows, 500/s | hour 2021-10-13T22 | 0 records"},
		{"nothing read yet: no rate, no ETA",
			Progress{FilesTotal: 4, BytesTotal: 1 << 20},
			0,
			"0% | files 0/4 | 0 rows | 0 records"},
		{"short ETA in tenths",
			Progress{FilesOpened: 1, FilesTotal: 2, Rows: 20_000, BytesRead: 3, BytesTotal: 4, Hour: hour},
			1500 * time.Millisecond,
			"75% ETA 500ms | files 1/2 | 20.0k rows, 13.3k/s | hour 2021-10-13T22 | 0 records"},
		{"done",
			Progress{FilesOpened: 4, FilesTotal: 4, Rows: 13_847, BytesRead: 10, BytesTotal: 10, Hour: hour, Records: 707, Done: true},
			123456 * time.Microsecond,
			"done in 100ms | files 4/4 | 13.8k rows, 112k/s | hour 2021-10-13T22 | 707 records"},
	} {
		if got := c.p.Line(c.elapsed); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestHumanCount(t *testing.T) {
	for n, want := range map[float64]string{
		0: "0", 999: "999", 999.6: "1.00k", 1000: "1.00k", 12_345: "12.3k", 999_600: "1.00M",
		2.5e9: "2.50G", 7e12: "7000G",
	} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%v) = %q, want %q", n, got, want)
		}
	}
}

// TestExampleProgress: the run reports every file it opens, counts all
// rows and input bytes against the totals found up front, and ends with a
// Done call; a .csv and a .csv.gz of one hour count once (the .csv is
// read), and a .csv.gz alone counts its compressed bytes.
func TestExampleProgress(t *testing.T) {
	src := exampleLogs(t)
	dir := t.TempDir()
	var want int64
	for i, name := range exampleLogFiles {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0: // both forms: the .csv is read
			writeGz(t, filepath.Join(dir, name+".gz"), b)
			fallthrough
		case 1:
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			want += int64(len(b))
		default: // compressed only
			n := writeGz(t, filepath.Join(dir, name+".gz"), b)
			want += n
		}
	}
	var calls []Progress
	var st Stats
	err := Run(context.Background(), Config{Dir: dir, Tag: "test", Start: exampleStart, FlushAtEOF: true,
		OnProgress: func(p Progress) { calls = append(calls, p) }}, &capture{}, &st)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < len(exampleLogFiles)+1 {
		t.Fatalf("%d progress calls, want one per file and the last", len(calls))
	}
	last := calls[len(calls)-1]
	t.Logf("last: %+v; %s", last, last.Line(time.Second))
	if !last.Done || last.FilesOpened != 4 || last.FilesTotal != 4 || last.BytesTotal != want || last.BytesRead != want ||
		last.Rows != st.Rows+st.Confirmations || last.Records != st.Records || !last.Hour.Equal(exampleStart.Add(time.Hour)) {
		t.Errorf("last progress %+v, want done, 4/4 files, %d bytes, %d rows, %d records, hour 22",
			last, want, st.Rows+st.Confirmations, st.Records)
	}
	for i, p := range calls[:len(calls)-1] {
		if p.Done {
			t.Errorf("call %d before the end is Done", i)
		}
		if i > 0 && (p.FilesOpened < calls[i-1].FilesOpened || p.Rows < calls[i-1].Rows || p.BytesRead < calls[i-1].BytesRead) {
			t.Errorf("call %d went backwards: %+v after %+v", i, p, calls[i-1])
		}
	}
}

// TestProgressWithoutFlush: the rows read on to count the records left
// unwritten are still rows read; the figures do not go back at the end.
func TestProgressWithoutFlush(t *testing.T) {
	var calls []Progress
	if err := Run(context.Background(), Config{Dir: exampleLogs(t), Tag: "test", Start: exampleStart,
		OnProgress: func(p Progress) { calls = append(calls, p) }}, &capture{}, nil); err != nil {
		t.Fatal(err)
	}
	last := calls[len(calls)-1]
	if !last.Done || last.FilesOpened != 4 || last.BytesRead != last.BytesTotal {
		t.Errorf("last progress %+v, want every file read", last)
	}
}

func writeGz(t *testing.T, path string, b []byte) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return fi.Size()
}
