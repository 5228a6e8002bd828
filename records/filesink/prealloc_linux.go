package filesink

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Preallocation: on ext4 each hour file reserves its blocks ahead of its
// writes (fallocate(2), FALLOC_FL_KEEP_SIZE: the file's size stays that of
// its content). A write(2) into reserved blocks skips ext4's delayed
// allocation of every page (its reservation and extent-status lookups),
// about a quarter of the write's CPU (BenchmarkPreallocWrite). The
// reserve grows with the file, from preallocMin up to preallocMax ahead of
// its end, so that a file of a few rows an hour holds little more than its
// rows; at close the blocks past the end are given back (ftruncate to the
// file's own size). Other file systems are left alone (on tmpfs a reserve
// is memory, and none of them was measured), and an ext4 file that cannot
// (one without extents) just writes as before.
const (
	// preallocMin is the least reserve ahead of a file's end.
	preallocMin = 1 << 20
	// preallocMax is the most: with five logs and up to three open
	// hours each, at most 15 × preallocMax are reserved past the files'
	// ends at once (and left so by a crash until the hour's file is next
	// closed or compressed).
	preallocMax = 16 << 20
)

// fallocate is unix.Fallocate (tests replace it).
var fallocate = unix.Fallocate

// canReserve says whether fd's file system is one whose writes preallocation
// makes cheaper: ext4.
func canReserve(fd *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(fd.Fd()), &st) == nil && st.Type == unix.EXT4_SUPER_MAGIC
}

// reserve makes sure the blocks for the next n bytes of f are reserved,
// and a reserve ahead of them. It fails silently: fallocate is only a
// saving, and a write that then fails reports its own error.
func (f *hourFile) reserve(n int) {
	end := f.size + int64(n)
	if !f.reserving || end <= f.allocEnd {
		return
	}
	ahead := min(max(f.size, preallocMin), preallocMax)
	off := max(f.size, f.allocEnd)
	err := fallocate(int(f.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, end+ahead-off)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		// The file cannot (ext4 without extents): it will not again.
		f.reserving = false
		return
	}
	// Even a failed call (a full disk) may have reserved some blocks.
	f.reserved = true
	if err == nil {
		f.allocEnd = end + ahead
	}
	// Other errors leave allocEnd: the next write tries again.
}

// release gives back the blocks reserved past f's end: ftruncate to the
// file's own size (ext4 frees the blocks past the end even when the size
// does not change).
func (f *hourFile) release() error {
	if !f.reserved {
		return nil
	}
	st, err := f.f.Stat()
	if err != nil {
		return err
	}
	return f.f.Truncate(st.Size())
}
