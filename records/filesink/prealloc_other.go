//go:build !linux

package filesink

import "os"

// Without fallocate(2) files are not preallocated (prealloc_linux.go).

func canReserve(*os.File) bool { return false }

func (f *hourFile) reserve(int) {}

func (f *hourFile) release() error { return nil }
