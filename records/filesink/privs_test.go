package filesink

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// requireRoot skips a test that changes file owners, or fails it under
// CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("chown tests need root (CI=true)")
		}
		t.Skip("chown tests need root")
	}
}

// owner returns the uid, gid and permission bits of path, not following a
// final symbolic link.
func owner(t *testing.T, path string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return sys.Uid, sys.Gid, st.Mode().Perm()
}

// TestChownFollowsNoLink plants, in a log directory, a symbolic link and
// a hard link named like log files, pointing at files outside it: Chown
// (run as root before the switch to the telescope's user) must hand over
// the real log file and the directory, and leave the outside files as
// they were.
func TestChownFollowsNoLink(t *testing.T) {
	requireRoot(t)
	const uid, gid = 65534, 65534
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	target := filepath.Join(outside, "shadow")
	linked := filepath.Join(outside, "passwd")
	for _, p := range []string{target, linked} {
		if err := os.WriteFile(p, []byte("secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := &Writer{cfg: Config{Dir: dir, Tag: "t"}}
	w.initStreams()
	hour := at(10, 0, 0, 0).Unix()
	real := w.tcpRaw.name(hour)
	if err := os.WriteFile(filepath.Join(dir, real), []byte("rows\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, w.eventLog.name(hour))); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(linked, filepath.Join(dir, w.replyLog.name(hour))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// Root's directory holding other things is not given away.
	if err := Chown(dir, "t", uid, gid); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("Chown of a directory with notes.txt = %v, want a refusal naming it", err)
	}
	if u, _, m := owner(t, dir); u != 0 || m != 0o755 {
		t.Fatalf("refused dir changed: owner %d mode %o", u, m)
	}
	// An earlier run handed it over: the links planted since must not be
	// followed.
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := Chown(dir, "t", uid, gid); err != nil {
		t.Fatalf("Chown: %v", err)
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
		mode     os.FileMode
	}{
		{dir, uid, gid, 0o750},
		{filepath.Join(dir, real), uid, gid, 0o640},
		{target, 0, 0, 0o644},
		{linked, 0, 0, 0o644},
		{filepath.Join(dir, "notes.txt"), 0, 0, 0o644},
	} {
		u, g, m := owner(t, c.path)
		if u != c.uid || g != c.gid || m != c.mode {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d %o", c.path, u, g, m, c.uid, c.gid, c.mode)
		}
	}

	// A log directory that is itself a link is refused, its target kept.
	link := filepath.Join(t.TempDir(), "logs")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	err := Chown(link, "t", uid, gid)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Chown of a linked log dir = %v, want a symbolic-link error", err)
	}
	if u, _, _ := owner(t, outside); u != 0 {
		t.Errorf("the link's target dir was handed to uid %d", u)
	}
}

// TestFileModes checks the modes of what the Writer creates: 0640 log
// files, and 0640 for their gzip too.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	w, _ := newTestWriter(t, Config{Compress: true})
	for i, h := range []int{10, 11, 12} {
		p := pkt(at(h, 0, 0, 0), uint16(i+1), true)
		w.Packet(&p)
	}
	waitFor(t, "two files compressed", func() bool { return w.Stats().FilesCompressed == 2 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	gz := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".gz") {
			gz++
		}
		if _, _, m := owner(t, filepath.Join(w.cfg.Dir, e.Name())); m != FileMode {
			t.Errorf("%s: mode %o, want %o", e.Name(), m, FileMode)
		}
	}
	if gz != 2 || len(entries) != 6 {
		t.Errorf("%d files, %d gzipped; want 6 and 2", len(entries), gz)
	}
}

// TestWritesThroughDirHandle gives the Writer a log directory whose path
// it cannot reach once it runs as another user: every file goes through
// the handle opened before, as `spoki run` does before dropping root.
func TestWritesThroughDirHandle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, DirMode); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The path goes away under the handle: a rename stands in for a path
	// the user may not traverse.
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	w, _ := newTestWriter(t, Config{Dir: dir, Root: root, Compress: true})
	for i, h := range []int{10, 11, 12} {
		p := pkt(at(h, 0, 0, 0), uint16(i+1), true)
		w.Packet(&p)
	}
	waitFor(t, "two files compressed", func() bool { return w.Stats().FilesCompressed == 2 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.PacketsWritten != 3 || st.WriteErrors != 0 {
		t.Errorf("stats %+v, want 3 rows written and no error", st)
	}
	if entries, err := os.ReadDir(moved); err != nil || len(entries) != 6 {
		n := len(entries)
		t.Errorf("%d files in the directory behind the handle, want 6", n)
	}
}

// TestChownLeavesSharedDir: a log directory that is shared, sticky and
// writable by all as /tmp is, keeps its owner and mode (taking it would
// lock every other user out of it); the log files in it are handed over.
func TestChownLeavesSharedDir(t *testing.T) {
	requireRoot(t)
	const uid, gid = 65534, 65534
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	w := &Writer{cfg: Config{Dir: dir, Tag: "t"}}
	w.initStreams()
	log := filepath.Join(dir, w.tcpRaw.name(at(10, 0, 0, 0).Unix()))
	if err := os.WriteFile(log, []byte("rows\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Chown(dir, "t", uid, gid); err != nil {
		t.Fatalf("Chown: %v", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u, g, _ := owner(t, dir); u != 0 || g != 0 || st.Mode()&(os.ModeSticky|0o777) != os.ModeSticky|0o777 {
		t.Errorf("shared dir: owner %d:%d mode %v, want 0:0 and drwxrwxrwt as it was", u, g, st.Mode())
	}
	if u, g, m := owner(t, log); u != uid || g != gid || m != FileMode {
		t.Errorf("log file in the shared dir: owner %d:%d mode %o, want %d:%d %o", u, g, m, uid, gid, FileMode)
	}
}
