// Package debpkg builds spoki's Debian package with nfpm as a library (no
// external packaging tool): the binary in /usr/bin, the systemd unit, the
// example configuration as a conffile, the maintainer scripts that create
// the system user, and the help as a text file and a man page.
package debpkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Where the package puts things.
const (
	BinPath     = "/usr/bin/spoki"
	UnitPath    = "/lib/systemd/system/spoki.service"
	ConfigPath  = "/etc/spoki/spoki.yaml"
	DocDir      = "/usr/share/doc/spoki"
	HelpPath    = DocDir + "/spoki.txt"
	ManPath     = "/usr/share/man/man1/spoki.1.gz"
	LogDir      = "/var/lib/spoki"
	unitBinPath = "/usr/local/bin/spoki" // ExecStart of deploy/spoki.service, installed by hand
)

// Options says what to package and where the package goes.
type Options struct {
	// Binary is the built spoki (make build).
	Binary string
	// Root is the repository: deploy/ and README.md are read from it.
	Root string
	// Version is `git describe --tags --always --dirty` (or a Debian
	// version); DebianVersion turns it into the package's version.
	Version string
	// Arch is the Go architecture of Binary ("" is runtime.GOARCH).
	Arch string
	// Maintainer is the control file's Maintainer ("Name <email>").
	Maintainer string
	// OutDir is where spoki_VERSION_ARCH.deb is written.
	OutDir string
	// MTime is the time of every file in the package (zero: nfpm's
	// default, SOURCE_DATE_EPOCH if set, for reproducible packages).
	MTime time.Time
}

// DefaultMaintainer is the Maintainer without Options.Maintainer.
const DefaultMaintainer = "spoki maintainers <spoki-telescope@users.noreply.github.com>"

// debianVersionRE is a Debian upstream version without epoch or
// revision: a digit first, then alphanumerics and . + ~ (a hyphen would
// start a Debian revision).
var debianVersionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// ValidVersion says whether v is usable as the package's version.
func ValidVersion(v string) bool { return debianVersionRE.MatchString(v) }

// describeRE is git describe's output for a tag vX.Y.Z[-PRE]: tag, then
// -N-gHASH if commits follow it, then -dirty.
var describeRE = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)(?:-([0-9A-Za-z.]+?))??(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)

// hashRE is git describe --always without a tag: the abbreviated commit.
var hashRE = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)

// DebianVersion turns `git describe --tags --always --dirty` into a
// Debian version that sorts as the builds do:
//
//	v1.2.3                 1.2.3
//	v1.2.3-rc1             1.2.3~rc1          (before 1.2.3)
//	v1.2.3-4-gabc1234      1.2.3+4.gabc1234   (after 1.2.3)
//	v1.2.3-dirty           1.2.3+dirty
//	abc1234[-dirty]        0.0.0~dev+gabc1234[.dirty]  (no tag yet)
//	"" or anything else    0.0.0~dev
//
// A string that is already a valid Debian version is kept.
func DebianVersion(describe string) string {
	d := strings.TrimSpace(describe)
	if m := hashRE.FindStringSubmatch(d); m != nil {
		v := "0.0.0~dev+g" + m[1]
		if m[2] != "" {
			v += ".dirty"
		}
		return v
	}
	if m := describeRE.FindStringSubmatch(d); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "~" + m[2]
		}
		var meta []string
		if m[3] != "" {
			meta = append(meta, m[3], "g"+m[4])
		}
		if m[5] != "" {
			meta = append(meta, "dirty")
		}
		if len(meta) > 0 {
			v += "+" + strings.Join(meta, ".")
		}
		if ValidVersion(v) {
			return v
		}
	}
	if ValidVersion(d) {
		return d
	}
	return "0.0.0~dev"
}

// debArch is the Debian name of a Go architecture.
func debArch(goarch string) string {
	switch goarch {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return goarch
}

// FileName is the package's file name: spoki_VERSION_ARCH.deb.
func FileName(version, goarch string) string {
	return fmt.Sprintf("spoki_%s_%s.deb", version, debArch(goarch))
}

// Build writes the package into o.OutDir and returns its path.
func Build(o Options) (string, error) {
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Maintainer == "" {
		o.Maintainer = DefaultMaintainer
	}
	version := DebianVersion(o.Version)
	deploy := filepath.Join(o.Root, "deploy")
	for _, p := range []string{o.Binary, filepath.Join(deploy, "spoki.service"), filepath.Join(deploy, "spoki.yaml")} {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("debpkg: %w", err)
		}
	}
	stage, err := os.MkdirTemp("", "spoki-debpkg-")
	if err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	defer os.RemoveAll(stage)

	unit, err := packagedUnit(filepath.Join(deploy, "spoki.service"))
	if err != nil {
		return "", err
	}
	help, err := HelpText(o.Binary)
	if err != nil {
		return "", err
	}
	man, err := manPage(help, version)
	if err != nil {
		return "", err
	}
	staged := map[string][]byte{"spoki.service": unit, "spoki.txt": help, "spoki.1.gz": man}
	for name, data := range staged {
		if err := os.WriteFile(filepath.Join(stage, name), data, 0o644); err != nil {
			return "", fmt.Errorf("debpkg: %w", err)
		}
	}
	file := func(src, dst string, mode os.FileMode, typ string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	contents := files.Contents{
		file(o.Binary, BinPath, 0o755, files.TypeFile),
		file(filepath.Join(stage, "spoki.service"), UnitPath, 0o644, files.TypeFile),
		// A conffile: dpkg keeps the operator's edits across upgrades.
		file(filepath.Join(deploy, "spoki.yaml"), ConfigPath, 0o644, files.TypeConfig),
		file(filepath.Join(stage, "spoki.txt"), HelpPath, 0o644, files.TypeFile),
		file(filepath.Join(stage, "spoki.1.gz"), ManPath, 0o644, files.TypeFile),
		file(filepath.Join(deploy, "deb", "copyright"), DocDir+"/copyright", 0o644, files.TypeFile),
		file(filepath.Join(deploy, "spoki.yaml"), DocDir+"/examples/spoki.yaml", 0o644, files.TypeFile),
	}
	if _, err := os.Stat(filepath.Join(o.Root, "README.md")); err == nil {
		contents = append(contents, file(filepath.Join(o.Root, "README.md"), DocDir+"/README.md", 0o644, files.TypeFile))
	}
	if _, err := os.Stat(filepath.Join(deploy, "grafana-dashboard.json")); err == nil {
		contents = append(contents, file(filepath.Join(deploy, "grafana-dashboard.json"), DocDir+"/grafana-dashboard.json", 0o644, files.TypeFile))
	}
	scripts := filepath.Join(deploy, "deb")
	info := &nfpm.Info{
		Name:          "spoki",
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // DebianVersion made it a Debian version already
		Section:       "net",
		Priority:      "optional",
		Maintainer:    o.Maintainer,
		Homepage:      "https://github.com/spoki-telescope/spoki",
		Description: "reactive network telescope\n" +
			"spoki answers every TCP SYN sent to the address space routed to it,\n" +
			"statelessly, completes the handshakes that scanners come back for,\n" +
			"and records what they send in Spoki-compatible logs.",
		MTime: o.MTime,
		Overridables: nfpm.Overridables{
			// gzip at level 6, not nfpm's 9: 0.3 % larger for the binary at
			// a quarter of the time (gzip -6 vs -9 on bin/spoki), and every
			// dpkg reads it.
			Deb: nfpm.Deb{Compression: "gzip:6"},
			// libc: the binary is built with cgo; passwd: useradd in postinst.
			Depends:    []string{"libc6", "passwd"},
			Recommends: []string{"systemd"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	out := filepath.Join(o.OutDir, FileName(version, o.Arch))
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	return out, nil
}

// packagedUnit is deploy/spoki.service with ExecStart on the packaged
// binary. It must reload on SIGHUP and have a memory ceiling: the package
// is for months of running.
func packagedUnit(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("debpkg: %w", err)
	}
	s := string(b)
	for _, want := range []string{"\nExecStart=" + unitBinPath + " ", "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nMemoryMax="} {
		if !strings.Contains(s, want) {
			return nil, fmt.Errorf("debpkg: %s lacks %q", path, strings.TrimSpace(want))
		}
	}
	s = strings.ReplaceAll(s, "\nExecStart="+unitBinPath+" ", "\nExecStart="+BinPath+" ")
	return []byte(s), nil
}

// commandRE is a command's line in `spoki help`'s list: two spaces, the
// name, a space.
var commandRE = regexp.MustCompile(`^  ([a-z]+)\s`)

// HelpText is the help of every command of bin: `spoki help`, then
// `spoki CMD --help` for each command it lists, as one text file.
func HelpText(bin string) ([]byte, error) {
	top, err := runHelp(bin, "help")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "SPOKI(1)\n\nNAME\n    spoki - reactive network telescope\n\nSYNOPSIS\n")
	indent(&b, top)
	b.WriteString("\nCOMMANDS\n")
	inList := false
	for _, line := range strings.Split(string(top), "\n") {
		if strings.HasPrefix(line, "commands:") {
			inList = true
			continue
		}
		m := commandRE.FindStringSubmatch(line)
		if !inList || m == nil || m[1] == "help" {
			continue
		}
		out, err := runHelp(bin, m[1], "--help")
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\nspoki %s\n", m[1])
		indent(&b, out)
	}
	b.WriteString("\nFILES\n")
	for _, f := range [][2]string{
		{BinPath, "the telescope"},
		{ConfigPath, "its configuration (spoki config check " + ConfigPath + ")"},
		{UnitPath, "the systemd unit (systemctl reload spoki: SIGHUP re-reads the configuration)"},
		{LogDir, "its logs"},
		{DocDir + "/README.md", "the full documentation"},
		{DocDir + "/grafana-dashboard.json", "a Grafana dashboard of its metrics (spoki run --metrics ADDR)"},
	} {
		fmt.Fprintf(&b, "    %-44s %s\n", f[0], f[1])
	}
	return b.Bytes(), nil
}

// runHelp runs bin with args and returns what it printed; help exits 0
// (or 2 for a usage message), anything else is an error.
func runHelp(bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		return nil, fmt.Errorf("debpkg: %s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, fmt.Errorf("debpkg: %s %s printed nothing", bin, strings.Join(args, " "))
	}
	return out, nil
}

// indent writes text indented by four spaces.
func indent(b *bytes.Buffer, text []byte) {
	for _, line := range strings.Split(strings.TrimRight(string(text), "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("    " + line + "\n")
	}
}

// manPage is the help text as a gzipped man page, so that `man spoki`
// shows what the commands' help says: the text's unindented lines
// (SYNOPSIS, "spoki run", FILES) become sections and subsections, the
// indented text below them no-fill blocks as printed.
func manPage(help []byte, version string) ([]byte, error) {
	var roff bytes.Buffer
	fmt.Fprintf(&roff, ".TH SPOKI 1 \"\" \"spoki %s\" \"User Commands\"\n.SH NAME\nspoki \\- reactive network telescope\n", version)
	lines := strings.Split(strings.TrimRight(string(help), "\n"), "\n")
	// The text's own title and NAME are the man page's header.
	for len(lines) > 0 && lines[0] != "SYNOPSIS" {
		lines = lines[1:]
	}
	inBlock := false
	for _, line := range lines {
		if line != "" && !strings.HasPrefix(line, " ") {
			if inBlock {
				roff.WriteString(".fi\n")
				inBlock = false
			}
			macro := ".SS"
			if line == strings.ToUpper(line) {
				macro = ".SH"
			}
			fmt.Fprintf(&roff, "%s %s\n", macro, roffEscape(line))
			continue
		}
		if !inBlock {
			roff.WriteString(".nf\n")
			inBlock = true
		}
		roff.WriteString(roffEscape(strings.TrimPrefix(line, "    ")) + "\n")
	}
	if inBlock {
		roff.WriteString(".fi\n")
	}
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(roff.Bytes()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}

// roffEscape makes a line of text literal in roff: backslashes, and a
// leading . or ' that would start a request.
func roffEscape(line string) string {
	line = strings.ReplaceAll(line, `\`, `\e`)
	if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
		line = `\&` + line
	}
	return line
}
