package filesink

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/records"
)

// mountExt4 makes an ext4 file system of sizeBytes in an image file
// (mkfs.ext4 with the extra options opts), mounts it on a fresh directory
// through a loop device and unmounts it at cleanup. It needs root and
// mkfs.ext4: without them the test skips, except under CI=true.
func mountExt4(t *testing.T, sizeBytes int64, opts ...string) string {
	t.Helper()
	need := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ext4 test: %s, and CI=true", why)
		}
		t.Skipf("ext4 test: %s", why)
	}
	if os.Geteuid() != 0 {
		need("needs root to mount a file system")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		need("no mkfs.ext4 (e2fsprogs)")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeBytes); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, append(append([]string{"-q", "-F"}, opts...), img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %v: %v\n%s", opts, err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s on %s: %v\n%s", img, dir, err, out)
	}
	// Registered after TempDir, so it runs before the directory's removal
	// (the detached loop device goes with the last reference).
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fallocCall is one call of fallocate: the file's path, the range.
type fallocCall struct {
	path   string
	off, n int64
}

// fallocateCalls replaces fallocate for the test with one that records
// each call and answers with result (nil: the real fallocate).
func fallocateCalls(t *testing.T, result error) *[]fallocCall {
	var mu sync.Mutex
	var calls []fallocCall
	t.Cleanup(func() { fallocate = unix.Fallocate })
	fallocate = func(fd int, mode uint32, off, n int64) error {
		path, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		mu.Lock()
		calls = append(calls, fallocCall{path, off, n})
		mu.Unlock()
		if result != nil {
			return result
		}
		return unix.Fallocate(fd, mode, off, n)
	}
	return &calls
}

// synRows hands n SYNs of hour h (and their SYN-ACKs' reply rows) to w in
// batches, source ports from 1.
func synRows(w *Writer, h, n int) {
	pkts, reps := synBatch(at(h, 0, 0, 0), BatchRecords)
	for sent := 0; sent < n; {
		k := min(BatchRecords, n-sent)
		for i := range k {
			pkts[i].SrcPort = uint16(sent + i + 1)
			reps[i].DstPort = pkts[i].SrcPort
		}
		w.Records(pkts[:k], reps[:k])
		sent += k
	}
}

// diskBytes returns the file's size and the bytes of disk it holds.
func diskBytes(t *testing.T, path string) (size, disk int64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Size, st.Blocks * 512
}

// checkNoReserve fails if the file at path holds more disk than its
// content needs (its blocks, and an extent block or two).
func checkNoReserve(t *testing.T, path string, content []byte) {
	t.Helper()
	size, disk := diskBytes(t, path)
	if size != int64(len(content)) {
		t.Errorf("%s: size %d, its content %d bytes", filepath.Base(path), size, len(content))
	}
	if disk > size+64<<10 {
		t.Errorf("%s: %d bytes on disk for %d of content: the reserve was not given back", filepath.Base(path), disk, size)
	}
}

func TestPreallocatedFilesKeepTheirSize(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "compress"
		}
		t.Run(name, func(t *testing.T) {
			dir := mountExt4(t, 256<<20)
			calls := fallocateCalls(t, nil)
			w, _ := newTestWriter(t, Config{Dir: dir, Compress: compress, FlushInterval: 10 * time.Millisecond})
			const n = 6000 // about 4 MiB of logs: several flushes and reserves
			synRows(w, 10, n)
			waitFor(t, "hour 10 written", func() bool {
				st := w.Stats()
				return st.PacketsWritten == n && st.RepliesWritten == n && st.EventsWritten == n
			})
			// Open and flushed: the event log holds the blocks up to the
			// end of its last reserve, past its end.
			events10 := filepath.Join(dir, eventsName(at(10, 0, 0, 0)))
			var allocEnd int64
			for _, c := range *calls {
				if c.path == events10 {
					allocEnd = max(allocEnd, c.off+c.n)
				}
			}
			if size, disk := diskBytes(t, events10); allocEnd <= size || disk < allocEnd-4096 {
				t.Errorf("open event log: %d bytes on disk for %d of content, want its reserve up to %d", disk, size, allocEnd)
			}
			// Hour 12 rotates hour 10 out (and 11 has nothing): its
			// rows are written after the rotation.
			synRows(w, 12, 10)
			waitFor(t, "hour 12 written", func() bool {
				st := w.Stats()
				return st.PacketsWritten == n+10 && st.RepliesWritten == n+10 && st.EventsWritten == n+10
			})
			if compress {
				waitFor(t, "hour 10 compressed", func() bool { return w.Stats().FilesCompressed == 3 })
			}
			for _, f := range []string{rawName(at(10, 0, 0, 0)), eventsName(at(10, 0, 0, 0))} {
				path := filepath.Join(dir, f)
				var content []byte
				var err error
				if compress {
					path += ".gz"
					content = []byte(strings.Join(gunzipLines(t, path), "\n") + "\n")
				} else if content, err = os.ReadFile(path); err == nil {
					checkNoReserve(t, path, content)
				} else {
					t.Fatal(err)
				}
				if got := strings.Count(string(content), "\n"); got != n+1 && got != n {
					t.Errorf("%s: %d lines, want %d rows (and the raw log's header)", f, got, n)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			// Closed by Close: the plain files of hour 12 (the next run
			// appends to them) hold no reserve either.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".gz") || !e.Type().IsRegular() {
					continue
				}
				path := filepath.Join(dir, e.Name())
				content, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				checkNoReserve(t, path, content)
			}
			st := w.Stats()
			if st.PacketsWritten != n+10 || st.DropWriteError != 0 || st.WriteErrors != 0 {
				t.Errorf("Stats() = %+v, want %d packets written and nothing lost", st, n+10)
			}
			// The reserve grows with the file: few calls, none beyond
			// a buffer and preallocMax.
			if len(*calls) == 0 || len(*calls) > 30 {
				t.Errorf("%d fallocate calls for about 4 MiB in 6 files, want 1 to 30", len(*calls))
			}
			for _, c := range *calls {
				if c.n > maxPendingBytes+preallocMax {
					t.Errorf("fallocate(%s, %d, %d): more than a buffer and preallocMax", c.path, c.off, c.n)
				}
			}
		})
	}
}

// TestPreallocFallsBack writes to files that cannot be preallocated: ext4
// without extents (fallocate fails with EOPNOTSUPP, tried once per file),
// and a full disk as fallocate sees it (ENOSPC from every call). Every row
// is written and nothing is counted lost.
func TestPreallocFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []string
		result error
	}{
		{"no-extents", []string{"-O", "^extent,^flex_bg,^64bit"}, nil},
		{"enospc", nil, unix.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountExt4(t, 64<<20, tc.opts...)
			calls := fallocateCalls(t, tc.result)
			w, _ := newTestWriter(t, Config{Dir: dir, FlushInterval: 10 * time.Millisecond})
			const n = 3000
			synRows(w, 10, n)
			waitFor(t, "written", func() bool { return w.Stats().EventsWritten == n })
			synRows(w, 10, n)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			st := w.Stats()
			if st.PacketsWritten != 2*n || st.RepliesWritten != 2*n || st.EventsWritten != 2*n || st.DropWriteError != 0 || st.WriteErrors != 0 {
				t.Errorf("Stats() = %+v, want %d of each written and nothing lost", st, 2*n)
			}
			os.Remove(filepath.Join(dir, "lost+found"))
			files := readDir(t, dir)
			for _, f := range []string{rawName(at(10, 0, 0, 0)), eventsName(at(10, 0, 0, 0))} {
				if got := len(files[f]); got != 2*n+1 && got != 2*n {
					t.Errorf("%s: %d lines, want %d rows (and the raw log's header)", f, got, 2*n)
				}
			}
			switch {
			case len(*calls) == 0:
				t.Errorf("fallocate never called: the test tests nothing")
			case tc.result == nil && len(*calls) > 3:
				// Three files (raw, reply, events): one refusal each.
				t.Errorf("%d fallocate calls on a file system without extents, want one per file (3)", len(*calls))
			}
		})
	}
}

// BenchmarkPreallocWrite measures the process CPU (getrusage, user and
// system) of the writer's write(2) of full buffers to a file in the test's
// temporary directory, with and without the reserve, per 650 bytes (a
// SYN's three rows). A buffer is full, as commit fills it, with the row
// that takes it to flushBytes or past: its writes are not aligned to the
// page cache's folios. Files are replaced every 256 buffers, outside the
// measure. On a file system other than ext4 both are the same (no
// reserve).
func BenchmarkPreallocWrite(b *testing.B) {
	const perSYN = 650
	var chunk []byte
	p, _ := costSYN()
	for len(chunk) < flushBytes {
		chunk = records.AppendSYNEvent(chunk, &p)
	}
	for _, reserve := range []bool{false, true} {
		name := "reserve=off"
		if reserve {
			name = "reserve=on"
		}
		b.Run(name, func(b *testing.B) {
			w, err := newWriter(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			var cpu, sys time.Duration
			var before, after syscall.Rusage
			hour := int64(0)
			b.ResetTimer()
			for done := 0; done < b.N; hour += 3600 {
				b.StopTimer()
				f := w.eventLog.fileFor(w, hour)
				if f == nil {
					b.Fatal("cannot open")
				}
				if !f.reserving && reserve {
					b.Logf("%s is not ext4: no reserve", w.cfg.Dir)
				}
				f.reserving = f.reserving && reserve
				b.StartTimer()
				syscall.Getrusage(syscall.RUSAGE_SELF, &before)
				for k := 0; k < 256 && done < b.N; k, done = k+1, done+1 {
					f.buf = append(f.buf[:0], chunk...)
					if err := f.flush(w); err != nil {
						b.Fatal(err)
					}
				}
				syscall.Getrusage(syscall.RUSAGE_SELF, &after)
				b.StopTimer()
				cpu += time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
				sys += time.Duration(after.Stime.Nano() - before.Stime.Nano())
				w.eventLog.cur = nil
				w.closeFile(w.eventLog, f, "final")
				os.Remove(f.path)
				b.StartTimer()
			}
			syns := float64(b.N) * float64(len(chunk)) / perSYN
			b.ReportMetric(float64(cpu.Nanoseconds())/syns, "cpu-ns/SYN")
			b.ReportMetric(float64(sys.Nanoseconds())/syns, "sys-ns/SYN")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestWrittenCountsMatchLines checks the rows counted as written (tallied
// as they are added to a file's buffer, not read back from it) against the
// lines in the files: SYNs and replies over several full buffers, UDP
// payloads and ICMP with line ends and quotes in them, ACKs of an older
// hour, and event lines of the caller's.
func TestWrittenCountsMatchLines(t *testing.T) {
	w, _ := newTestWriter(t, Config{FlushInterval: 5 * time.Millisecond,
		UDPFields: func(dst []byte, port uint16, p []byte) []byte {
			return strconv.AppendQuote(append(dst, `"payload":`...), string(p))
		}})
	const n = 1500 // 550 KiB of events: full buffers written mid-stream
	synRows(w, 10, n)
	hostile := []byte("a\nb\r\n\"c\",\n\x00\n")
	for i := range 200 {
		udp := records.Packet{Time: at(10, 1, 0, 0), Proto: records.ProtoUDP, WScale: -1,
			Src: netip.MustParseAddr("198.51.100.9"), Dst: netip.MustParseAddr("192.0.2.10"),
			SrcPort: uint16(i), DstPort: 53, Payload: hostile[:i%len(hostile)]}
		w.Packet(&udp)
		icmp := udp
		icmp.Proto, icmp.ICMPType, icmp.Payload = records.ProtoICMP, 8, hostile
		w.Packet(&icmp)
		ack := pkt(at(9, 59, 0, 0), uint16(i), false)
		w.Packet(&ack)
		w.Event(at(10, 2, 0, 0), []byte(`{"event_type":"x"}`))
		if i%50 == 0 {
			time.Sleep(10 * time.Millisecond) // flushes of partly filled buffers
		}
	}
	synRows(w, 11, n)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var raw, replies, events uint64
	for name, lines := range readDir(t, w.cfg.Dir) {
		rows := uint64(len(lines))
		switch {
		case strings.Contains(name, ".raw."):
			raw += rows - 1 // the header
		case strings.Contains(name, ".scamper."):
			replies += rows - 1
		case strings.Contains(name, ".events."):
			events += rows
		}
	}
	st := w.Stats()
	if st.PacketsWritten != raw || st.RepliesWritten != replies || st.EventsWritten != events {
		t.Errorf("written: %d packets, %d replies, %d events; lines in the files: %d, %d, %d",
			st.PacketsWritten, st.RepliesWritten, st.EventsWritten, raw, replies, events)
	}
	if want := uint64(2*n + 3*200); raw != want || replies != 2*n || events != 2*n+3*200 {
		t.Errorf("lines in the files: %d raw, %d replies, %d events, want %d, %d, %d", raw, replies, events, want, 2*n, 2*n+600)
	}
	if st.DropWriteError != 0 || st.DropPacketQueueFull != 0 || st.DropEventQueueFull != 0 {
		t.Errorf("Stats() = %+v, want nothing dropped", st)
	}
}
