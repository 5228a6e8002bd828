package filesink

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/internal/syncbuf"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/records"
)

// gunzip reads a gzipped log whole with the standard library.
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("gunzip %s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip %s: %v", path, err)
	}
	return b
}

// gunzipLines reads a gzipped log whole and returns its lines.
func gunzipLines(t *testing.T, path string) []string {
	t.Helper()
	return strings.Split(strings.TrimSuffix(string(gunzip(t, path)), "\n"), "\n")
}

// waitFor polls cond for up to 10 s, failing with what when it stays false.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawName is the raw TCP log of the hour starting at hour, tag untagged.
func rawName(hour time.Time) string {
	return hour.UTC().Format("2006-01-02.15:04:05") + ".untagged.spoki.tcp.raw." + strconv.FormatInt(hour.Unix(), 10) + ".csv"
}

// eventsName is the event log of the hour starting at hour, tag untagged.
func eventsName(hour time.Time) string {
	return "untagged.events." + hour.UTC().Format("20060102-15") + ".jsonl"
}

func TestCompressRotatedHours(t *testing.T) {
	w, _ := newTestWriter(t, Config{Compress: true})
	for i, h := range []int{10, 11, 12} {
		p := pkt(at(h, 0, 0, 0), uint16(i+1), true)
		w.Packet(&p)
	}
	// 12:00 rotates 10:00 out (11:00 stays open as the previous hour): its
	// raw log and event log are compressed.
	waitFor(t, "two files compressed", func() bool { return w.Stats().FilesCompressed == 2 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := w.cfg.Dir
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{
		rawName(at(10, 0, 0, 0)) + ".gz", rawName(at(11, 0, 0, 0)), rawName(at(12, 0, 0, 0)),
		eventsName(at(10, 0, 0, 0)) + ".gz", eventsName(at(11, 0, 0, 0)), eventsName(at(12, 0, 0, 0)),
	}
	sort.Strings(names)
	sort.Strings(want)
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("files after Close = %v, want %v", names, want)
	}
	if got := sports(t, "10:00.gz", gunzipLines(t, filepath.Join(dir, rawName(at(10, 0, 0, 0))+".gz"))); !reflect.DeepEqual(got, []string{"1"}) {
		t.Errorf("10:00 rows in the gzip = %v, want [1]", got)
	}
	if got := gunzipLines(t, filepath.Join(dir, eventsName(at(10, 0, 0, 0))+".gz")); len(got) != 1 || !strings.Contains(got[0], `"syn"`) {
		t.Errorf("10:00 events in the gzip = %q, want one syn event", got)
	}
	if st := w.Stats(); st.CompressErrors != 0 || st.CompressQueueFull != 0 {
		t.Errorf("Stats() = %+v, want no compression errors", st)
	}
}

// TestCompressWorkers compresses a plain log of a finished hour found at
// start, over a dozen blocks long, with one worker and with several: the
// gzip must be one that the standard library reads back byte for byte, and
// the plain file must go.
func TestCompressWorkers(t *testing.T) {
	_, _, plain := floodLogs(7_500) // 3.2 MiB of events
	if len(plain) < 12*compressBlockBytes+1000 {
		t.Fatalf("%d bytes: fewer than a dozen blocks", len(plain))
	}
	for _, workers := range []int{1, 4} {
		t.Run(strconv.Itoa(workers), func(t *testing.T) {
			dir := t.TempDir()
			name := rawName(time.Unix(hourOf(time.Now()), 0).Add(-3 * time.Hour))
			if err := os.WriteFile(filepath.Join(dir, name), plain, 0o600); err != nil {
				t.Fatal(err)
			}
			w, _ := newTestWriter(t, Config{Dir: dir, Compress: true, CompressWorkers: workers})
			waitFor(t, "the file compressed", func() bool { return w.Stats().FilesCompressed == 1 })
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("plain file after compression: %v, want it gone", err)
			}
			if got := gunzip(t, filepath.Join(dir, name+".gz")); !bytes.Equal(got, plain) {
				t.Fatalf("gunzip gives %d bytes, want the %d written", len(got), len(plain))
			}
		})
	}
	if _, err := New(Config{Dir: t.TempDir(), Compress: true, CompressWorkers: MaxCompressWorkers + 1}); err == nil {
		t.Errorf("New with %d compress workers: no error", MaxCompressWorkers+1)
	}
}

// TestCompressCloseMidway closes the Writer while several workers
// compress a large file: the plain file must stay whole, no gzip or
// temporary file may remain, and pgzip's goroutines must end.
func TestCompressCloseMidway(t *testing.T) {
	_, _, plain := floodLogs(56_000) // 24 MiB of events
	dir := t.TempDir()
	name := rawName(time.Unix(hourOf(time.Now()), 0).Add(-3 * time.Hour))
	if err := os.WriteFile(filepath.Join(dir, name), plain, 0o600); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	w, _ := newTestWriter(t, Config{Dir: dir, Compress: true, CompressWorkers: 4})
	waitFor(t, "the compression to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "."+name+tmpSuffix))
		return err == nil || w.Stats().FilesCompressed > 0
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().FilesCompressed > 0 {
		t.Fatal("the file was compressed before Close: not the case this test is for")
	}
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("plain file after Close: %d bytes, %v; want the %d written", len(got), err, len(plain))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files after Close = %v, want only %s", names, name)
	}
	waitFor(t, "the compressor's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestSweepExpiresAndCompresses(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	hour := time.Unix(hourOf(now), 0)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	row := records.RawHeader + "\n1|2|3\n"
	expired := []string{rawName(hour.Add(-50 * time.Hour)), eventsName(hour.Add(-49*time.Hour)) + ".gz"}
	for _, name := range expired {
		write(name, row)
	}
	toCompress := rawName(hour.Add(-3 * time.Hour))
	write(toCompress, row)
	kept := []string{rawName(hour), rawName(hour.Add(-time.Hour)), "notes.txt", "other.events." + hour.Format("20060102-15") + ".jsonl"}
	for _, name := range kept {
		write(name, row)
	}
	stale := "." + rawName(hour.Add(-5*time.Hour)) + tmpSuffix
	write(stale, "partial")

	w, _ := newTestWriter(t, Config{Dir: dir, Compress: true, Keep: 48 * time.Hour})
	waitFor(t, "sweep", func() bool {
		st := w.Stats()
		return st.FilesRemoved == 2 && st.FilesCompressed == 1
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(expired, stale, toCompress) {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (err %v), want it removed", name, err)
		}
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v, want it kept as is", name, err)
		}
	}
	if got := gunzipLines(t, filepath.Join(dir, toCompress+".gz")); !reflect.DeepEqual(got, []string{records.RawHeader, "1|2|3"}) {
		t.Errorf("gunzip(%s.gz) = %q", toCompress, got)
	}
}

func TestCompressLeavesOpenFiles(t *testing.T) {
	dir := t.TempDir()
	w, err := newWriter(Config{Dir: dir, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	// Driven by hand: the writer holds an old hour open for late rows.
	p := pkt(at(3, 0, 0, 0), 1, false)
	w.writePacket(&p)
	path := w.tcpRaw.cur.path
	w.compress(path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("open file compressed away: %v", err)
	}
	if _, err := os.Stat(path + ".gz"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gzip of an open file exists (err %v)", err)
	}
	// A file opened while being compressed keeps its plain copy.
	w.files.mu.Lock()
	w.files.compressing = path
	w.files.mu.Unlock()
	w.files.opening(path)
	if !w.files.cancelled {
		t.Error("opening a file under compression did not cancel it")
	}
	w.files.closed(path)
	if err := w.closeAll(); err != nil {
		t.Fatal(err)
	}
	if n := len(w.files.open); n != 0 {
		t.Errorf("%d paths still marked open after closeAll, want 0", n)
	}
	w.files.compressing = ""
	w.compress(path)
	if got := sports(t, "gz", gunzipLines(t, path+".gz")); !reflect.DeepEqual(got, []string{"1"}) {
		t.Errorf("rows after compression = %v, want [1]", got)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plain file still there after compression (err %v)", err)
	}
}

// mountTmpfs mounts a tmpfs of sizeBytes on a fresh directory and unmounts
// it at cleanup. It needs root (CAP_SYS_ADMIN): without, the test skips,
// except under CI=true.
func mountTmpfs(t *testing.T, sizeBytes int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("disk-full test needs root to mount a tmpfs, and CI=true")
		}
		t.Skip("disk-full test needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.Itoa(sizeBytes)); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	// Registered after TempDir, so it runs before the directory's removal.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes zeros to dir/filler until the file system is full and
// returns the filler's path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v, want ENOSPC", dir, err)
			}
			break
		}
	}
	// Fill the last partial blocks too: small writes until nothing fits.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return path
		}
	}
}

func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 1<<20)
	logs := &syncbuf.Buffer{}
	w, err := newWriter(Config{Dir: dir, FlushInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// A small pending buffer, so that rows are dropped within seconds
	// rather than after 8 MiB.
	w.maxPending = 32 << 10
	go w.loop()
	w.startMaintenance()
	t.Cleanup(func() { w.Close() })

	sent := 0
	send := func(sport uint16) {
		p := pkt(at(10, 0, 0, 0), sport, false)
		start := time.Now()
		w.Packet(&p)
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Packet blocked for %v on a full disk", d)
		}
		sent++
	}
	send(1)
	waitFor(t, "first row", func() bool { return w.Stats().PacketsWritten == 1 })

	filler := fillDisk(t, dir)
	// Three seconds of rows on a full disk: three retries, one log line.
	fullStart := time.Now()
	for time.Since(fullStart) < 3*time.Second {
		for range 200 {
			send(2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := w.Stats()
	if st.WriteErrors < 2 || st.DropWriteError == 0 {
		t.Errorf("on a full disk: WriteErrors = %d, DropWriteError = %d, want >= 2 and > 0", st.WriteErrors, st.DropWriteError)
	}
	if n := strings.Count(logs.String(), "write failed"); n != 1 {
		t.Errorf("%d 'write failed' lines in %v, want 1 (once per minute):\n%s", n, time.Since(fullStart), logs)
	}
	if !strings.Contains(logs.String(), "disk_full=true") || !strings.Contains(logs.String(), "dropped=") {
		t.Errorf("the write failure line does not say the disk is full and what was lost:\n%s", logs)
	}

	// Room again: what waited is written, and so are later rows.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "write resumed", func() bool { return strings.Contains(logs.String(), "write resumed") })
	for range 100 {
		send(3)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v after the disk has room", err)
	}
	st = w.Stats()
	if got := st.PacketsWritten + st.DropWriteError + st.DropPacketQueueFull; got != uint64(sent) {
		t.Errorf("written %d + dropped %d + queue full %d = %d, want every one of %d rows accounted for",
			st.PacketsWritten, st.DropWriteError, st.DropPacketQueueFull, got, sent)
	}
	lines := readDir(t, dir)[rawName(at(10, 0, 0, 0))]
	got := sports(t, "10:00", lines)
	if uint64(len(got)) != st.PacketsWritten {
		t.Errorf("%d rows in the file, PacketsWritten = %d", len(got), st.PacketsWritten)
	}
	late := 0
	for _, s := range got {
		if s == "3" {
			late++
		}
	}
	if late != 100 {
		t.Errorf("%d of 100 rows sent after the disk had room are in the file", late)
	}
}
