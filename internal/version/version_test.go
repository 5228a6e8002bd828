package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionFromBuildInfo checks that the VCS settings and the -X version
// end up in Info and its output.
func TestVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/spoki-telescope/spoki", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}
	in := fromBuildInfo(bi, Info{Commit: "fedcba", Time: "2001-01-01T00:00:00Z"})
	want := Info{Version: "(devel)", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true,
		Time: "2026-11-30T12:00:00Z", GoVersion: "go1.99.1"}
	if in != want {
		t.Fatalf("fromBuildInfo = %+v, want %+v", in, want)
	}
	if got := in.ShortCommit(); got != "0123456789ab-dirty" {
		t.Errorf("ShortCommit = %q", got)
	}
	out := in.String()
	for _, s := range []string{"spoki (devel)\n", "commit: 0123456789abcdef0123456789abcdef01234567 (modified)\n",
		"built:  2026-11-30T12:00:00Z\n", "go:     go1.99.1 "} {
		if !strings.Contains(out, s) {
			t.Errorf("String() lacks %q:\n%s", s, out)
		}
	}
	if got := fromBuildInfo(bi, Info{Version: "v1.2.3-4-gabc"}).Version; got != "v1.2.3-4-gabc" {
		t.Errorf("-X version: got %q", got)
	}
	noVCS := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}
	ld := Info{Version: "1.0", Commit: "fedcba", Time: "2001-01-01T00:00:00Z", Modified: true}
	if got := fromBuildInfo(noVCS, ld); got.Commit != ld.Commit || got.Time != ld.Time || !got.Modified || got.Version != "1.0" {
		t.Errorf("no vcs settings: the linker's values are lost: %+v", got)
	}
	none := fromBuildInfo(nil, Info{})
	if none.Version != "unknown" || none.ShortCommit() != "unknown" || !strings.Contains(none.String(), "built without VCS") {
		t.Errorf("no build info: %+v\n%s", none, none.String())
	}
}

// TestVersionMakeBuild builds spoki as `make build` does and checks that
// `spoki version` and `spoki --version` report this checkout's version
// (git describe), commit and commit time.
func TestVersionMakeBuild(t *testing.T) {
	for _, tool := range []string{"git", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Skipf("git %v: %v (not a git checkout: nothing to embed)", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	head := git("rev-parse", "HEAD")
	describe := git("describe", "--tags", "--always", "--dirty")
	bin := filepath.Join(t.TempDir(), "spoki")
	mk := exec.Command("make", "-s", "-C", root, "build", "BIN="+bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VERSION=") { // a VERSION in the environment would win over git describe
			mk.Env = append(mk.Env, kv)
		}
	}
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("spoki %s: %v", arg, err)
		}
		s := string(out)
		for _, want := range []string{"spoki " + describe + "\n", "commit: " + head, "go:     go"} {
			if !strings.Contains(s, want) {
				t.Errorf("spoki %s lacks %q:\n%s", arg, want, s)
			}
		}
		if strings.Contains(s, "built:  unknown") {
			t.Errorf("spoki %s has no commit time:\n%s", arg, s)
		}
		if dirty := strings.HasSuffix(describe, "-dirty"); dirty != strings.Contains(s, "(modified)") {
			t.Errorf("spoki %s: modified flag does not match git describe %q:\n%s", arg, describe, s)
		}
	}
}
