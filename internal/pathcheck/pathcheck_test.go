package pathcheck

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRepository is the check of `make test`: no test, test helper or
// script of the repository refers to a path outside it.
func TestRepository(t *testing.T) {
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	findings, files, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	// The repository has dozens of test files; a handful means the walk
	// went wrong, not that the repository is clean.
	if files < 20 {
		t.Fatalf("checked %d files, want the repository's tests and scripts", files)
	}
	for _, f := range findings {
		t.Errorf("%s", f)
	}
	if len(findings) > 0 {
		t.Log("a test must use the repository's own data (testdata) or what it creates; mark attacker data that looks like a path with `pathcheck:ignore`")
	}
}

// TestPlanted runs the check on a tree with planted references (a copy of
// testdata/planted, which Check skips inside a repository): each line
// marked WANT must be found, and no other. The tree holds the assemble helper that looked for
// the example logs beside the repository.
func TestPlanted(t *testing.T) {
	root := plantedTree(t)
	findings, files, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(root, p)
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			if strings.Contains(sc.Text(), "WANT") && !strings.Contains(sc.Text(), "marked WANT") {
				want[filepath.ToSlash(rel)+":"+strconv.Itoa(n)] = true
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 20 {
		t.Fatalf("only %d planted references", len(want))
	}
	got := map[string]bool{}
	for _, f := range findings {
		k := f.File + ":" + strconv.Itoa(f.Line)
		if got[k] {
			continue
		}
		got[k] = true
		if !want[k] {
			t.Errorf("false positive: %s", f)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missed the planted reference at %s", k)
		}
	}
	// The production package is not a test: its /var/lib path is fine.
	if files != 7 {
		t.Errorf("checked %d files, want the 7 tests, helpers and scripts", files)
	}
}

// TestEscapes pins the resolution of relative paths.
func TestEscapes(t *testing.T) {
	for _, c := range []struct {
		dir, p string
		want   bool
	}{
		{"analysis/assemble", "../../records/testdata", false},
		{"analysis/assemble", "../../../" + "shared", true}, // pathcheck:ignore (the case under test)
		{".", "..", true},
		{".", "../x", true},
		{"a", "../b/../../c", true},
		{"a/b", "./../../c", false},
	} {
		if got := escapes(c.dir, c.p); got != c.want {
			t.Errorf("escapes(%q, %q) = %v, want %v", c.dir, c.p, got, c.want)
		}
	}
}

// plantedTree copies testdata/planted into a temporary directory and
// returns it. Its Go test files are stored as NAME_test.go.planted, so that
// nothing that reads this repository's tests (go vet, a search for tests
// that reach outside the repository) takes the planted references for real
// ones; the copy restores their names.
func plantedTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join("testdata", "planted")
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, strings.TrimSuffix(rel, ".planted"))
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
