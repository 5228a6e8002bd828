// Package version is what a spoki binary knows about its own build: the
// module version, the VCS commit it was built from and whether the tree
// had changes, the commit's time and the Go version, read from the build
// information the Go toolchain embeds (debug.ReadBuildInfo).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the version string the Makefile sets with
// -ldflags "-X github.com/spoki-telescope/spoki/internal/version.Version=..."
// from `git describe --tags --always --dirty`. Empty means the module
// version of the build information (a tag for `go install ...@vX.Y.Z`,
// "(devel)" for a build in a checkout).
var Version string

// Commit, CommitTime and Modified stand in for the build information's
// vcs.revision, vcs.time and vcs.modified when it has none: the Go
// toolchain stamps VCS information only where .git is a directory, not in
// a `git worktree` (whose .git is a file), nor with -buildvcs=false. The
// Makefile sets them from git; the build information wins when present.
var Commit, CommitTime, Modified string

// Info is a binary's build information.
type Info struct {
	// Version is Version if set, else the main module's version.
	Version string
	// Commit is the VCS revision ("" if built without VCS information,
	// e.g. outside a git checkout or with -buildvcs=false).
	Commit string
	// Modified says the working tree had uncommitted changes.
	Modified bool
	// Time is the commit's time (vcs.time, RFC 3339), "" if unknown.
	Time string
	// GoVersion is the toolchain the binary was built with.
	GoVersion string
}

// Get reads the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, Info{Version: Version, Commit: Commit, Time: CommitTime, Modified: Modified == "true"})
}

// fromBuildInfo is Get over given build information (nil: none) and what
// the linker set (ld; its GoVersion is ignored).
func fromBuildInfo(bi *debug.BuildInfo, ld Info) Info {
	in := ld
	in.GoVersion = runtime.Version()
	if bi == nil {
		if in.Version == "" {
			in.Version = "unknown"
		}
		return in
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	if in.Version == "" {
		in.Version = bi.Main.Version
	}
	if in.Version == "" {
		in.Version = "unknown"
	}
	var vcs Info
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			vcs.Commit = s.Value
		case "vcs.modified":
			vcs.Modified = s.Value == "true"
		case "vcs.time":
			vcs.Time = s.Value
		}
	}
	if vcs.Commit != "" {
		in.Commit, in.Modified, in.Time = vcs.Commit, vcs.Modified, vcs.Time
	}
	return in
}

// ShortCommit is the commit's first 12 hex digits with "-dirty" if the
// tree was modified; "unknown" without VCS information.
func (in Info) ShortCommit() string {
	c := in.Commit
	if c == "" {
		return "unknown"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	if in.Modified {
		c += "-dirty"
	}
	return c
}

// String is the `spoki version` output: one "key: value" line each.
func (in Info) String() string {
	var b strings.Builder
	commit, built := in.Commit, in.Time
	if commit == "" {
		commit = "unknown (built without VCS information)"
	} else if in.Modified {
		commit += " (modified)"
	}
	if built == "" {
		built = "unknown"
	}
	fmt.Fprintf(&b, "spoki %s\n", in.Version)
	fmt.Fprintf(&b, "commit: %s\n", commit)
	fmt.Fprintf(&b, "built:  %s\n", built)
	fmt.Fprintf(&b, "go:     %s %s/%s\n", in.GoVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
