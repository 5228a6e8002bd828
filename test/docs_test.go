package test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// e2eDocsRoot is the repository root, seen from this package.
const e2eDocsRoot = ".."

// e2eForeignDoc matches a citation of a document that is not in the
// repository: the background notes the code was first written from. What
// they said that the code needs is in docs/; cite that instead. The names
// are split so that this file does not match itself.
var e2eForeignDoc = regexp.MustCompile(`(gvisor|bench)-` + `notes|spoki-` + `(eval|core)|style\.` + `md|contract\.` + `md|shared/` + `spec`)

// e2eForeignDocAllowed lists files allowed to cite such documents while
// they are being moved into docs/: none now. An entry fails the test as soon
// as its file is clean, so that the list only shrinks.
var e2eForeignDocAllowed []string

// e2eDocLink matches a mention of a file under docs/, with an optional
// #anchor: `docs/frontend.md#the-cookie`.
var e2eDocLink = regexp.MustCompile(`\bdocs/([A-Za-z0-9_.-]+\.md)(#[a-z0-9_-]+)?`)

// e2eMarkdownLink matches a Markdown link target: [text](target).
var e2eMarkdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsCiteOnlyTheRepository keeps the documentation true to the
// repository: no Go, Markdown or scenario file cites a document that the
// repository does not hold, every mention of a docs/ file names one that
// exists (and, with #anchor, a heading it has), and every relative link of
// a Markdown file leads to a file (and heading) that exists.
func TestDocsCiteOnlyTheRepository(t *testing.T) {
	files := e2eDocFiles(t)
	if !slices.Contains(files, "docs/frontend.md") || !slices.Contains(files, "README.md") {
		t.Fatalf("walked %d files from %s without README.md and docs/frontend.md: wrong root?", len(files), e2eDocsRoot)
	}
	self := "test/docs_test.go"
	citing := map[string]bool{}
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(e2eDocsRoot, rel))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for i, line := range strings.Split(text, "\n") {
			if m := e2eForeignDoc.FindString(line); m != "" && rel != self {
				citing[rel] = true
				if !slices.Contains(e2eForeignDocAllowed, rel) {
					t.Errorf("%s:%d cites %q, which is not in the repository: cite docs/ instead (or say it):\n\t%s",
						rel, i+1, m, strings.TrimSpace(line))
				}
			}
			for _, m := range e2eDocLink.FindAllStringSubmatch(line, -1) {
				if err := e2eCheckTarget(filepath.Join("docs", m[1]), strings.TrimPrefix(m[2], "#")); err != "" {
					t.Errorf("%s:%d: %s: %s", rel, i+1, m[0], err)
				}
			}
			if !strings.HasSuffix(rel, ".md") {
				continue
			}
			for _, m := range e2eMarkdownLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				if file == "" {
					file = rel
				} else {
					file = filepath.Join(filepath.Dir(rel), file)
				}
				if err := e2eCheckTarget(file, anchor); err != "" {
					t.Errorf("%s:%d: link %s: %s", rel, i+1, target, err)
				}
			}
		}
	}
	for _, rel := range e2eForeignDocAllowed {
		if !citing[rel] {
			t.Errorf("%s no longer cites a document outside the repository: remove it from e2eForeignDocAllowed", rel)
		}
	}
}

// e2eDocFiles lists the repository's Go, Markdown and scenario files,
// relative to the root, with slashes.
func e2eDocFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(e2eDocsRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".pkt":
			rel, err := filepath.Rel(e2eDocsRoot, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// e2eCheckTarget says what is wrong with a link to file (relative to the
// root) and anchor (empty for none), or "" if nothing is.
func e2eCheckTarget(file, anchor string) string {
	path := filepath.Join(e2eDocsRoot, file)
	st, err := os.Stat(path)
	if err != nil {
		return "no such file " + filepath.ToSlash(filepath.Clean(file))
	}
	if anchor == "" {
		return ""
	}
	if st.IsDir() || !strings.HasSuffix(file, ".md") {
		return "an anchor on a file that is not Markdown"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if !slices.Contains(e2eMarkdownAnchors(string(b)), anchor) {
		return "no heading with anchor #" + anchor + " in " + filepath.ToSlash(filepath.Clean(file))
	}
	return ""
}

// e2eMarkdownAnchors returns the anchors GitHub gives the headings of a
// Markdown text: lower case, everything but letters, digits, '-' and '_'
// removed,
// spaces as '-', and "-1", "-2", ... for repeats. Lines in code fences
// are not headings.
func e2eMarkdownAnchors(md string) []string {
	var out []string
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, a+"-"+strconv.Itoa(n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}
