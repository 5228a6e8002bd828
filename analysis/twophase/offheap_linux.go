package twophase

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page (x86-64, and arm64 with
// 4 KiB pages).
const hugePage = 2 << 20

// offHeapHuge returns size zeroed bytes in anonymous memory mapped outside
// the Go heap, and a function that unmaps it. The table is pointer-free,
// so the collector has nothing to find in it; kept outside the heap, its
// tens of MiB neither count towards the heap goal (with GOGC=100 a 32 MiB
// table in the heap lets the heap grow 32 MiB more before each collection)
// nor get scanned. Every page is made resident at once: the budget an
// operator configured is paid at start, where the start-up RSS and the
// unit's MemoryMax show it, instead of growing page by page with the
// spoofed SYNs of the first flood. The table is read at random, so the
// mapping is aligned to hugePage and advised as huge pages (MADV_HUGEPAGE)
// before it is made resident: where transparent huge pages are enabled
// (always or madvise) a 32 MiB table is 16 pages for the TLB instead of
// 8192, and a random lookup misses in the cache without a page walk too.
// The memory resident is the same either way. It falls back to the heap if
// the mapping fails.
func offHeapHuge(size int) ([]byte, func()) {
	if size < hugePage {
		b, _, free := mapAnon[byte](size, true)
		return b, free
	}
	// Map a huge page more than needed, keep the aligned part, and unmap
	// the rest.
	m, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, size), func() {}
	}
	skip := (hugePage - uintptr(m)%hugePage) % hugePage
	at := unsafe.Add(m, skip)
	if skip > 0 {
		unix.MunmapPtr(m, skip)
	}
	if rest := hugePage - skip; rest > 0 {
		unix.MunmapPtr(unsafe.Add(at, size), rest)
	}
	b := unsafe.Slice((*byte)(at), size)
	unix.Madvise(b, unix.MADV_HUGEPAGE)
	if unix.Madvise(b, unix.MADV_POPULATE_WRITE) != nil {
		// Before Linux 5.14: fault every page in.
		for i := 0; i < len(b); i += 4096 {
			b[i] = 0
		}
	}
	return b, func() { unix.MunmapPtr(at, uintptr(size)) }
}

// mapAnon returns n zeroed Ts in anonymous memory outside the Go heap, the
// same memory as bytes (nil if it fell back to the heap), and a function
// that unmaps it. populate makes every page resident now; without it a page
// is resident once touched, until released (release).
func mapAnon[T any](n int, populate bool) ([]T, []byte, func()) {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if n == 0 || size == 0 {
		return make([]T, n), nil, func() {}
	}
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	if populate {
		flags |= unix.MAP_POPULATE
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return make([]T, n), nil, func() {}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), b, func() { unix.Munmap(b) }
}

// release gives the pages of b (from mapAnon) back to the kernel: they read
// as zeros and are no longer resident until touched again. Nothing may use
// b meanwhile.
func release(b []byte) {
	if b != nil {
		unix.Madvise(b, unix.MADV_DONTNEED)
	}
}

// releaseWith unmaps the table's memory once d is unreachable.
func releaseWith(d *Detector, free func()) {
	runtime.AddCleanup(d, func(f func()) { f() }, free)
}
