package twophase

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// offHeap returns n zeroed Ts in anonymous memory mapped outside the Go
// heap, and a function that unmaps it. The table is pointer-free, so the
// collector has nothing to find in it; kept outside the heap, its tens of
// MiB neither count towards the heap goal (with GOGC=100 a 32 MiB table in
// the heap lets the heap grow 32 MiB more before each collection) nor get
// scanned. MAP_POPULATE makes every page resident at once: the budget an
// operator configured is paid at start, where the start-up RSS and the
// unit's MemoryMax show it, instead of growing page by page with the
// spoofed SYNs of the first flood. It falls back to the heap if the
// mapping fails.
func offHeap[T any](n int) ([]T, func()) {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if n == 0 || size == 0 {
		return make([]T, n), func() {}
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return make([]T, n), func() {}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), func() { unix.Munmap(b) }
}

// releaseWith unmaps the table's memory once d is unreachable.
func releaseWith(d *Detector, free func()) {
	runtime.AddCleanup(d, func(f func()) { f() }, free)
}
