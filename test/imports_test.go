package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// e2eModule is spoki's module path.
const e2eModule = "github.com/spoki-telescope/spoki"

// e2eImportRule is one row of the dependency table (e2eImportTable):
// the packages it covers and the spoki packages they may import.
type e2eImportRule struct {
	// pkg is a package path relative to the module; a trailing "/..."
	// covers the package's subpackages (not the package itself).
	pkg string
	// mayImport lists the spoki packages (relative paths, "/..." as above)
	// the row's packages may import; "*" allows every package.
	mayImport []string
}

// e2eImportTable is the dependency table, and the only statement of the
// rule: tun, privs, records (but for its leaf records/communityid) and
// analysis/urls import nothing of spoki; the stages
// of the data flow (tun → netstack → handlers → records → sinks) import
// records and no other stage, except that netstack reads tun and the
// handlers use analysis/urls; the analyses, the lab and the scenarios sit
// beside the flow; only cmd/spoki and test may import everything. A new
// package needs a row here. The first matching row applies, so a
// subpackage's own row comes before its parent's "/..." row. Packages
// under one directory row may import each other's row-mates where the
// table names the directory as one owner (tun/tuntest the tun package,
// analysis/NAME the analysis package).
var e2eImportTable = []e2eImportRule{
	{"tun", nil},
	{"tun/...", []string{"tun"}},
	{"privs", nil},
	// records/communityid is a leaf (the Community ID hash) that records
	// uses for its events.
	{"records", []string{"records/communityid"}},
	{"records/communityid", nil},
	{"records/filesink", []string{"records"}},
	{"records/kafkasink", []string{"records"}},
	{"netstack", []string{"tun", "tun/...", "records", "netstack/udpreply"}},
	// netstack/udpreply is the pure UDP answers and parsers of the front
	// end; telescope hands its parsers to the file writer.
	{"netstack/udpreply", nil},
	{"handlers", []string{"records"}},
	// analysis/urls is the one pure analysis rule set the live handlers
	// share (downloader URLs in payloads): a leaf that imports nothing of
	// spoki (row below), so handlers may use it without reaching upstream.
	{"handlers/...", []string{"handlers", "records", "analysis/urls"}},
	{"scenarios", []string{"records"}},
	// scenarios/labrun runs the scenarios against a telescope in a lab.
	{"scenarios/labrun", []string{"scenarios", "records", "lab"}},
	{"scenarios/...", []string{"scenarios", "records"}},
	{"analysis", []string{"records"}},
	{"analysis/urls", nil},
	{"analysis/...", []string{"analysis", "analysis/...", "records", "records/kafkasink"}},
	{"lab", []string{"records"}},
	{"internal/pathcheck", nil},
	// internal/syncbuf is the tests' log sink read while written.
	{"internal/syncbuf", nil},
	// internal/version reads the build information; the package builder
	// and its command (make deb) package what the repository holds.
	{"internal/version", nil},
	{"internal/debpkg", nil},
	{"deploy/debpkg", []string{"internal/debpkg"}},
	// stats reads the counters every package describes in struct tags
	// (the packages need not import it); it imports nothing of spoki.
	{"stats", nil},
	// stats/promstats serves them to Prometheus, with the session
	// duration histogram over the records' sessions.
	{"stats/promstats", []string{"stats", "records", "internal/version"}},
	{"stats/...", []string{"stats"}},
	// config is the configuration of `spoki run`: its defaults and bounds
	// come from the stages it configures (the file sink's compressor
	// workers among them), and the handlers map is checked by building
	// the registry from the handler packages.
	// config checks the Kafka TLS and SASL settings with the sink's own
	// loader (records/kafkasink), so that check and use cannot disagree.
	{"config", []string{"tun", "netstack", "handlers", "handlers/...", "analysis/twophase", "records/filesink", "records/kafkasink"}},
	// telescope is `spoki run` once its flags are parsed: it sets up the
	// stages of the flow and serves; only the commands import it.
	{"telescope", []string{"tun", "privs", "netstack", "handlers", "records", "records/filesink", "records/kafkasink",
		"analysis/twophase", "config", "stats", "stats/promstats", "netstack/udpreply"}},
	{"cmd/spoki", []string{"*"}},
	{"test", []string{"*"}},
}

// e2eMatch reports whether the relative package path rel matches pattern.
func e2eMatch(pattern, rel string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return strings.HasPrefix(rel, base+"/")
	}
	return pattern == rel
}

// e2eImportAllowed says whether package from (relative path) may import
// package to (relative path), and whether from has a row at all.
func e2eImportAllowed(table []e2eImportRule, from, to string) (allowed, known bool) {
	for _, r := range table {
		if !e2eMatch(r.pkg, from) {
			continue
		}
		for _, p := range r.mayImport {
			if p == "*" || e2eMatch(p, to) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// e2eImportViolations lists the edges of imports (from → its spoki
// imports, relative paths) that the table does not allow, and the
// packages that have no row.
func e2eImportViolations(table []e2eImportRule, imports map[string][]string) []string {
	var bad []string
	for from, tos := range imports {
		if _, known := e2eImportAllowed(table, from, from); !known {
			bad = append(bad, "package "+from+" has no row in the dependency table")
			continue
		}
		for _, to := range tos {
			if ok, _ := e2eImportAllowed(table, from, to); !ok {
				bad = append(bad, from+" imports "+to+", which the dependency table does not allow")
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func TestImportRules(t *testing.T) {
	tests := []struct {
		name    string
		imports map[string][]string
		wantBad int
	}{
		{"the table's own edges", map[string][]string{
			"tun": nil, "tun/tuntest": {"tun"}, "records": nil, "records/filesink": {"records"},
			"netstack": {"tun", "records"}, "handlers": {"records"},
			"handlers/generic": {"handlers", "records"}, "handlers/handlerstest": {"records"},
			"scenarios": {"records"}, "analysis": {"records"}, "analysis/twophase": {"analysis", "records"},
			"lab": {"records"}, "cmd/spoki": {"tun", "netstack", "handlers", "handlers/generic", "lab", "records/filesink"},
			"test": {"lab", "records"},
		}, 0},
		{"tun imports records", map[string][]string{"tun": {"records"}}, 1},
		{"records imports filesink", map[string][]string{"records": {"records/filesink"}}, 1},
		{"filesink imports netstack", map[string][]string{"records/filesink": {"netstack", "records"}}, 1},
		{"netstack imports handlers", map[string][]string{"netstack": {"handlers", "records"}}, 1},
		{"handlers imports netstack", map[string][]string{"handlers": {"netstack"}}, 1},
		{"handler imports another handler", map[string][]string{"handlers/http": {"handlers/tls"}}, 1},
		{"handler imports tun", map[string][]string{"handlers/http": {"tun"}}, 1},
		{"lab imports netstack", map[string][]string{"lab": {"netstack"}}, 1},
		{"analysis imports filesink", map[string][]string{"analysis/urls": {"records/filesink"}}, 1},
		{"package without a row", map[string][]string{"metrics": {"records"}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e2eImportViolations(e2eImportTable, tc.imports)
			if len(got) != tc.wantBad {
				t.Errorf("e2eImportViolations(%v) = %q, want %d violations", tc.imports, got, tc.wantBad)
			}
		})
	}
}

// e2eGoTool returns the go command that runs this test.
func e2eGoTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(p); err != nil {
		labUnavailable(t, "the go command is not in PATH")
	}
	return p
}

// TestImportTable lists every package of the module with `go list -deps
// -json` and fails on any import edge between spoki packages that the
// dependency table (e2eImportTable) does not allow (test files are
// not packages' imports and are not checked).
func TestImportTable(t *testing.T) {
	cmd := exec.Command(e2eGoTool(t), "list", "-deps", "-json", e2eModule+"/...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Module     *struct{ Path string }
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || p.Module.Path != e2eModule {
			continue // the standard library and other modules
		}
		from := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, e2eModule), "/")
		imports[from] = nil
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, e2eModule+"/"); ok {
				imports[from] = append(imports[from], rel)
			}
		}
	}
	for _, want := range []string{"tun", "records", "netstack", "handlers", "cmd/spoki", "lab"} {
		if _, ok := imports[want]; !ok {
			t.Errorf("go list did not list package %s", want)
		}
	}
	for _, bad := range e2eImportViolations(e2eImportTable, imports) {
		t.Error(bad)
	}
	if !t.Failed() {
		var edges []string
		for from, tos := range imports {
			for _, to := range tos {
				edges = append(edges, from+" -> "+to)
			}
		}
		sort.Strings(edges)
		t.Logf("%d packages, spoki import edges: %s", len(imports), strings.Join(edges, ", "))
	}
}
