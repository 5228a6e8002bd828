// Package pathcheck finds references from the repository's tests and scripts
// to paths outside the repository: a fresh clone with nothing beside it must
// pass `make test`, so a test may read only what the repository holds (its
// testdata, files of other packages reached by relative paths), system
// files (/proc, /sys, /dev, ...) and what it creates itself.
//
// It reads Go test files (and the Go files of test-helper packages, whose
// directory name ends in "test"), the Makefile, .ci/ and shell scripts, and
// the include lines of scenario scripts. What it flags:
//
//   - a path argument, folded from string constants (literals, +, the
//     package's named constants, filepath.Join and path.Join of them), of a
//     file-system call (os.Open, os.ReadFile, os.Stat, filepath.Glob, ...)
//     or of filepath.Join itself, that climbs out of the repository when
//     resolved against the file's directory, or that is absolute and not
//     under a system directory (systemDirs);
//   - a string literal that is itself such a climbing path ("../../..");
//   - a string literal or script line naming a home directory, the module
//     cache or GOPATH, or this machine's work tree (personalMarkers);
//   - a lookup that hands the location to the environment: os.Getenv or
//     os.LookupEnv of a variable named like a directory (..._DIR, _LOGS,
//     _DATA, _ROOT, HOME, GOPATH, ...), os.UserHomeDir and its kin.
//
// Paths built at run time from variables (a walk up the parent directories,
// a fmt.Sprintf) are beyond a static check; the environment rule catches the
// usual way such a lookup is configured. A line that holds attacker data
// resembling a path can carry the comment `pathcheck:ignore`.
package pathcheck

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Finding is one reference to a path outside the repository.
type Finding struct {
	// File is relative to the checked root; Line counts from 1.
	File string
	Line int
	// Ref is the offending text, Why the rule it breaks.
	Ref, Why string
}

func (f Finding) String() string { return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Why, f.Ref) }

// ignoreComment exempts a line.
const ignoreComment = "pathcheck:ignore"

// systemDirs are the absolute directories a test may name: the kernel's
// and the operating system's, not anybody's data.
var systemDirs = []string{"/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/run", "/var/run"}

// personalMarkers name places that exist on one machine only: home
// directories, the Go module cache and GOPATH, the work tree of the
// machine this project was built on.
var personalMarkers = regexp.MustCompile(`(^|[^\w.-])(/home/|/Users/|/work/|~/)|\$[({]?HOME\b|\bGOMODCACHE\b|\bGOPATH\b|\bpkg/mod/`)

// envPathName matches environment variables that name a location.
var envPathName = regexp.MustCompile(`(^|_)(DIR|DIRS|PATH|LOGS|DATA|ROOT|HOME|GOPATH|GOMODCACHE|TESTDATA)$`)

// envAllowed are variables whose value is not data: the executable search
// path, and the binary that make builds inside the repository.
var envAllowed = map[string]bool{"PATH": true}

// fsFuncs are the calls whose arguments are paths (all of them are checked).
var fsFuncs = map[string]map[string]bool{
	"os": {"Open": true, "OpenFile": true, "ReadFile": true, "ReadDir": true, "Stat": true, "Lstat": true,
		"Create": true, "WriteFile": true, "Mkdir": true, "MkdirAll": true, "Remove": true, "RemoveAll": true,
		"Chdir": true, "DirFS": true, "Readlink": true, "Rename": true, "Symlink": true, "Link": true, "Truncate": true},
	"filepath": {"Glob": true, "Walk": true, "WalkDir": true, "Join": true, "Abs": true, "EvalSymlinks": true},
	"path":     {"Join": true},
	"ioutil":   {"ReadFile": true, "ReadDir": true, "WriteFile": true},
}

// homeFuncs hand out places outside the repository.
var homeFuncs = map[string]bool{"UserHomeDir": true, "UserCacheDir": true, "UserConfigDir": true}

// Check walks root (the repository) and returns every finding, sorted, and
// how many files it checked.
func Check(root string) (findings []Finding, files int, err error) {
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, 0, err
	}
	var out []Finding
	consts := map[string]map[string]ast.Expr{} // by directory
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == ".git" || name == "testdata" || name == "bin" || name == "vendor") {
				return fs.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		var fs []Finding
		switch {
		case strings.HasSuffix(name, ".go") && (strings.HasSuffix(name, "_test.go") || strings.HasSuffix(filepath.Base(filepath.Dir(p)), "test")):
			fs, err = checkGo(p, rel, consts)
		case name == "Makefile" || strings.HasPrefix(rel, ".ci/") || strings.HasSuffix(name, ".sh") || strings.HasSuffix(name, ".bash"):
			fs, err = checkScript(p, rel, false)
		case strings.HasSuffix(name, ".pkt") || strings.HasSuffix(name, ".inc"):
			fs, err = checkScript(p, rel, true)
		default:
			return nil
		}
		files++
		out = append(out, fs...)
		return err
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out, files, err
}

// escapes reports whether the relative path p, resolved against the
// directory dir (relative to the root, slash-separated), leaves the root.
func escapes(dir, p string) bool {
	j := path.Join(dir, filepath.ToSlash(p))
	return j == ".." || strings.HasPrefix(j, "../")
}

// outsidePath returns why the folded path p, named in a file of dir, is
// outside the repository, or "".
func outsidePath(dir, p string) string {
	if p == "" {
		return ""
	}
	if strings.HasPrefix(p, "/") {
		for _, s := range systemDirs {
			if p == s || strings.HasPrefix(p, s+"/") {
				return ""
			}
		}
		return "absolute path outside the system directories"
	}
	if escapes(dir, p) {
		return "relative path climbs out of the repository"
	}
	return ""
}

// checkGo applies the Go rules to one file.
func checkGo(file, rel string, cache map[string]map[string]ast.Expr) ([]Finding, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(src), "\n")
	dir := path.Dir(rel)
	key := filepath.Dir(file) + "\x00" + strings.TrimSuffix(f.Name.Name, "_test")
	if cache[key] == nil {
		cache[key] = packageConsts(filepath.Dir(file), f.Name.Name)
	}
	c := &goChecker{rel: rel, dir: dir, fset: fset, lines: lines, consts: cache[key]}
	ast.Inspect(f, c.visit)
	return c.out, nil
}

type goChecker struct {
	rel, dir string
	fset     *token.FileSet
	lines    []string
	consts   map[string]ast.Expr
	out      []Finding
	seen     map[string]bool
}

func (c *goChecker) add(pos token.Pos, ref, why string) {
	line := c.fset.Position(pos).Line
	if line-1 < len(c.lines) && strings.Contains(c.lines[line-1], ignoreComment) {
		return
	}
	key := strconv.Itoa(line) + "\x00" + why
	if c.seen[key] {
		return
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[key] = true
	c.out = append(c.out, Finding{File: c.rel, Line: line, Ref: ref, Why: why})
}

func (c *goChecker) visit(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.BasicLit:
		if n.Kind != token.STRING {
			return true
		}
		v, err := strconv.Unquote(n.Value)
		if err != nil {
			return true
		}
		if personalMarkers.MatchString(v) {
			c.add(n.Pos(), v, "names a home directory, the module cache or a machine's work tree")
		}
		if (v == ".." || strings.HasPrefix(v, "../")) && !strings.ContainsAny(v, " \t\n") && escapes(c.dir, v) {
			c.add(n.Pos(), v, "relative path climbs out of the repository")
		}
	case *ast.CallExpr:
		pkg, fn, ok := selector(n.Fun)
		if !ok {
			return true
		}
		switch {
		case pkg == "os" && homeFuncs[fn]:
			c.add(n.Pos(), "os."+fn+"()", "looks outside the repository (a user's directory)")
		case pkg == "os" && (fn == "Getenv" || fn == "LookupEnv") && len(n.Args) == 1:
			if name, ok := c.fold(n.Args[0], 0); ok && !envAllowed[name] && envPathName.MatchString(name) {
				c.add(n.Pos(), "os."+fn+"("+strconv.Quote(name)+")", "takes a location from the environment")
			}
		case fsFuncs[pkg][fn]:
			if fn == "Join" {
				if p, ok := c.fold(n, 0); ok {
					if why := outsidePath(c.dir, p); why != "" {
						c.add(n.Pos(), p, why)
					}
				}
				return true
			}
			for _, a := range n.Args {
				if p, ok := c.fold(a, 0); ok {
					if why := outsidePath(c.dir, p); why != "" {
						c.add(a.Pos(), p, why)
					}
				}
			}
		}
	}
	return true
}

// selector splits pkg.Fn.
func selector(e ast.Expr) (pkg, fn string, ok bool) {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", "", false
	}
	id, ok := s.X.(*ast.Ident)
	if !ok {
		return "", "", false
	}
	return id.Name, s.Sel.Name, true
}

// fold evaluates e if it is built from string constants only.
func (c *goChecker) fold(e ast.Expr, depth int) (string, bool) {
	if depth > 16 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		v, err := strconv.Unquote(e.Value)
		return v, err == nil
	case *ast.ParenExpr:
		return c.fold(e.X, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := c.fold(e.X, depth+1)
		y, ok2 := c.fold(e.Y, depth+1)
		return x + y, ok1 && ok2
	case *ast.Ident:
		if v, ok := c.consts[e.Name]; ok {
			return c.fold(v, depth+1)
		}
	case *ast.CallExpr:
		pkg, fn, ok := selector(e.Fun)
		if !ok || fn != "Join" || (pkg != "filepath" && pkg != "path") || len(e.Args) == 0 {
			return "", false
		}
		parts := make([]string, len(e.Args))
		for i, a := range e.Args {
			if parts[i], ok = c.fold(a, depth+1); !ok {
				return "", false
			}
		}
		return path.Join(parts...), true
	}
	return "", false
}

// packageConsts collects the constants declared anywhere in the package
// pkg of dir (its external test package included), scopes ignored.
func packageConsts(dir, pkg string) map[string]ast.Expr {
	consts := map[string]ast.Expr{}
	collect := func(file *ast.File) {
		ast.Inspect(file, func(n ast.Node) bool {
			g, ok := n.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				return true
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						consts[name.Name] = vs.Values[i]
					}
				}
			}
			return true
		})
	}
	ents, _ := os.ReadDir(dir)
	fset := token.NewFileSet()
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		other, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil || strings.TrimSuffix(other.Name.Name, "_test") != strings.TrimSuffix(pkg, "_test") {
			continue
		}
		collect(other)
	}
	return consts
}

// shellTokens splits a script line into words at blanks, quotes and shell
// punctuation.
var shellTokens = regexp.MustCompile(`[^\s"'=();:,|&<>` + "`" + `]+`)

// checkScript applies the text rules to a script: a relative path counts
// from the root. For scenario scripts (includesOnly) the payload lines are
// attacker data: only the include lines are paths, relative to the file.
func checkScript(file, rel string, includesOnly bool) ([]Finding, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Make and .ci/run work from the root, whatever directory a script
	// lives in; the scenario runner reads an include relative to its file.
	dir := "."
	if includesOnly {
		dir = path.Dir(rel)
	}
	var out []Finding
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.Contains(line, ignoreComment) {
			continue
		}
		if includesOnly {
			p, ok := strings.CutPrefix(strings.TrimSpace(line), "include ")
			if !ok {
				continue
			}
			if why := outsidePath(dir, strings.TrimSpace(p)); why != "" {
				out = append(out, Finding{File: rel, Line: n, Ref: line, Why: why})
			}
			continue
		}
		if m := personalMarkers.FindString(line); m != "" {
			out = append(out, Finding{File: rel, Line: n, Ref: strings.TrimSpace(line), Why: "names a home directory, the module cache or a machine's work tree"})
			continue
		}
		for _, tok := range shellTokens.FindAllString(line, -1) {
			if (tok == ".." || strings.HasPrefix(tok, "../")) && escapes(dir, tok) {
				out = append(out, Finding{File: rel, Line: n, Ref: tok, Why: "relative path climbs out of the repository"})
				break
			}
		}
	}
	return out, sc.Err()
}
