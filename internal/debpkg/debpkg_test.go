package debpkg

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spoki-telescope/spoki/config"
)

// TestDebVersion checks DebianVersion on what git describe prints, that
// every result is a valid Debian version, and (with dpkg) that they sort
// as the builds do.
func TestDebVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-rc1-4-gabc1234", "1.2.3~rc1+4.gabc1234"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"abc1234", "0.0.0~dev+gabc1234"},
		{"abc1234-dirty", "0.0.0~dev+gabc1234.dirty"},
		{"", "0.0.0~dev"},
		{"0.0.0-dev", "0.0.0~dev"},
		{"release candidate", "0.0.0~dev"},
		{"1:2.0", "0.0.0~dev"}, // no epochs: a typo must not outrank every later version
	} {
		got := DebianVersion(tc.in)
		if got != tc.want {
			t.Errorf("DebianVersion(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !ValidVersion(got) {
			t.Errorf("DebianVersion(%q) = %q is not a valid version", tc.in, got)
		}
	}
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dpkg not found")
		}
		t.Skip("dpkg not found: ordering not checked")
	}
	// Each build sorts after the one before it; a modified tree after its
	// commit.
	order := []string{"abc1234", "v0.9.0", "v1.0.0-rc1", "v1.0.0-rc1-2-gabc1234", "v1.0.0", "v1.0.0-1-gdef5678", "v1.0.0-2-g0123abc", "v1.0.1"}
	var pairs [][2]string
	for i := 1; i < len(order); i++ {
		pairs = append(pairs, [2]string{order[i-1], order[i]})
	}
	pairs = append(pairs, [2]string{"v1.0.0", "v1.0.0-dirty"}, [2]string{"v1.0.0-1-gdef5678", "v1.0.0-1-gdef5678-dirty"}, [2]string{"abc1234", "abc1234-dirty"})
	for _, p := range pairs {
		a, b := DebianVersion(p[0]), DebianVersion(p[1])
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (%s) does not sort before %s (%s): %v", a, p[0], b, p[1], err)
		}
	}
}

// need fails the test (CI=true) or skips it without tool.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (.ci/run installs it)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
}

// repoRoot is the repository this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// spokiBinary is $SPOKI_BIN (make test builds it) or a fresh build.
func spokiBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SPOKI_BIN"); bin != "" {
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	bin := filepath.Join(t.TempDir(), "spoki")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/spoki")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs a command and fails the test unless it succeeds; it returns the
// combined output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newRoot is a throw-away root that dpkg can install into: an empty dpkg
// database, the account files useradd edits, and (for chroot) nothing
// else yet.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir() // removed with everything in it when the test ends
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"var/lib/dpkg/status":    "",
		"var/lib/dpkg/available": "",
		"etc/passwd":             "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":              "root:x:0:\n",
		"etc/shadow":             "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":            "root:*::\n",
	} {
		mode := os.FileMode(0o644)
		if strings.Contains(name, "shadow") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// copyIn copies the host's file src to the same path in root, following
// symbolic links, so that a chroot or systemd-analyze --root finds it.
func copyIn(t *testing.T, root, src string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, src)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// copyLibs copies the shared libraries bin needs (ldd) into root.
func copyLibs(t *testing.T, root, bin string) {
	t.Helper()
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return // static: nothing to copy
		}
		t.Fatalf("ldd %s: %v\n%s", bin, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
		f := strings.Fields(line)
		for _, w := range f {
			if strings.HasPrefix(w, "/") {
				copyIn(t, root, w)
				break
			}
		}
	}
}

// TestDebInstall builds the package, installs it with dpkg into a
// throw-away root, and checks what an operator gets: the files, the
// conffile, the system user and log directory the postinst makes (in the
// root, not the host), an installed spoki that runs and accepts the
// example config, and a unit systemd-analyze verify accepts. It installs
// twice (postinst is idempotent), then removes and purges.
func TestDebInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestDebInstall needs root (dpkg --root, chroot)")
		}
		t.Skip("needs root")
	}
	need(t, "dpkg", "dpkg-query", "useradd", "chroot", "ldd", "systemd-analyze")
	repo := repoRoot(t)
	bin := spokiBinary(t)
	out := t.TempDir()
	deb, err := Build(Options{Binary: bin, Root: repo, Version: "v1.2.3-4-gabc1234", OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(out, "spoki_1.2.3+4.gabc1234_"+debArch(runtime.GOARCH)+".deb"); deb != want {
		t.Errorf("package %s, want %s", deb, want)
	}
	hostPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}

	root := newRoot(t)
	// --force-script-chrootless: dpkg runs the maintainer scripts on the
	// host with DPKG_ROOT=root (the root has no shell); --force-depends:
	// the root has no libc6 or passwd package.
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--log=/dev/null",
			"--force-script-chrootless", "--force-depends"}, args...)...)
	}
	dpkg("-i", deb)
	dpkg("-i", deb) // again: an upgrade or reinstall runs postinst again

	// The files, with their modes.
	for path, mode := range map[string]os.FileMode{
		BinPath: 0o755, UnitPath: 0o644, ConfigPath: 0o644, HelpPath: 0o644, ManPath: 0o644,
		DocDir + "/copyright": 0o644, DocDir + "/README.md": 0o644, DocDir + "/grafana-dashboard.json": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	yaml, _ := os.ReadFile(filepath.Join(repo, "deploy", "spoki.yaml"))
	if got, _ := os.ReadFile(filepath.Join(root, ConfigPath)); !bytes.Equal(got, yaml) {
		t.Errorf("%s is not deploy/spoki.yaml", ConfigPath)
	}
	if got := run(t, "dpkg-query", "--root="+root, "-W", "-f=${Conffiles}", "spoki"); !strings.Contains(got, ConfigPath+" ") {
		t.Errorf("conffiles %q lack %s", got, ConfigPath)
	}
	if got := run(t, "dpkg-query", "--root="+root, "-W", "-f=${Status} ${Version}", "spoki"); got != "install ok installed 1.2.3+4.gabc1234" {
		t.Errorf("dpkg status %q", got)
	}
	unit, _ := os.ReadFile(filepath.Join(root, UnitPath))
	for _, want := range []string{"\nExecStart=/usr/bin/spoki run --config /etc/spoki/spoki.yaml ", "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nMemoryMax=", "\nUser=spoki\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("installed unit lacks %q", strings.TrimSpace(want))
		}
	}
	if man, err := os.ReadFile(filepath.Join(root, ManPath)); err != nil {
		t.Error(err)
	} else if zr, err := gzip.NewReader(bytes.NewReader(man)); err != nil {
		t.Errorf("%s: %v", ManPath, err)
	} else if roff, err := io.ReadAll(zr); err != nil || !bytes.HasPrefix(roff, []byte(".TH SPOKI 1 ")) || !bytes.Contains(roff, []byte("spoki run")) {
		t.Errorf("%s is no man page of spoki: %v\n%.200s", ManPath, err, roff)
	}
	help, _ := os.ReadFile(filepath.Join(root, HelpPath))
	for _, want := range []string{"spoki run\n", "--prefix", "spoki config\n", ConfigPath} {
		if !bytes.Contains(help, []byte(want)) {
			t.Errorf("%s lacks %q", HelpPath, want)
		}
	}

	// The system user, once, in the root's account files only; its log
	// directory.
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	var users []string
	for _, line := range strings.Split(string(passwd), "\n") {
		if strings.HasPrefix(line, "spoki:") {
			users = append(users, line)
		}
	}
	if len(users) != 1 {
		t.Fatalf("root's /etc/passwd has %d spoki users, want 1:\n%s", len(users), passwd)
	}
	f := strings.Split(users[0], ":")
	if len(f) != 7 || f[5] != LogDir || f[6] != "/usr/sbin/nologin" || len(f[2]) > 3 { // a system uid: below 1000
		t.Errorf("spoki user %q: want a system user with home %s and no shell", users[0], LogDir)
	}
	if group, _ := os.ReadFile(filepath.Join(root, "etc/group")); !bytes.Contains(group, []byte("\nspoki:x:")) {
		t.Errorf("root's /etc/group has no spoki group:\n%s", group)
	}
	if now, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(now, hostPasswd) {
		t.Errorf("the host's /etc/passwd changed: postinst must write into DPKG_ROOT only")
	}
	fi, err := os.Stat(filepath.Join(root, LogDir))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("log directory: %v %v", fi, err)
	} else if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) != f[2] {
		t.Errorf("log directory owned by uid %d, want spoki's %s", st.Uid, f[2])
	}

	// The installed spoki runs inside the root: `spoki version` and
	// `spoki config check` on the installed example, in a chroot with the
	// libraries the binary links.
	copyLibs(t, root, filepath.Join(root, BinPath))
	if got := run(t, "chroot", root, BinPath, "version"); !strings.HasPrefix(got, "spoki ") || !strings.Contains(got, "go:     go") {
		t.Errorf("installed spoki version:\n%s", got)
	}
	if got := run(t, "chroot", root, BinPath, "config", "check", ConfigPath); strings.TrimSpace(got) != ConfigPath+": ok" {
		t.Errorf("installed spoki config check:\n%s", got)
	}

	// systemd-analyze verify of the installed unit inside the root: the
	// root gets what systemd and procps give a real system (the targets
	// the unit orders itself after, /bin/kill of ExecReload); any warning
	// fails.
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	slices, _ := filepath.Glob("/lib/systemd/system/*.slice")
	if len(targets) == 0 {
		t.Fatal("no systemd targets in /lib/systemd/system")
	}
	for _, u := range append(targets, slices...) {
		copyIn(t, root, u)
	}
	copyIn(t, root, "/bin/kill")
	if got := run(t, "systemd-analyze", "verify", "--root="+root, UnitPath); strings.TrimSpace(got) != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", UnitPath, got)
	}

	// Remove keeps the conffile and the logs; purge removes the conffile.
	dpkg("-r", "spoki")
	if _, err := os.Stat(filepath.Join(root, BinPath)); !os.IsNotExist(err) {
		t.Errorf("after dpkg -r: %s: %v", BinPath, err)
	}
	if _, err := os.Stat(filepath.Join(root, ConfigPath)); err != nil {
		t.Errorf("after dpkg -r the conffile is gone: %v", err)
	}
	dpkg("--purge", "spoki")
	if _, err := os.Stat(filepath.Join(root, ConfigPath)); !os.IsNotExist(err) {
		t.Errorf("after dpkg --purge: %s: %v", ConfigPath, err)
	}
	if _, err := os.Stat(filepath.Join(root, LogDir)); err != nil {
		t.Errorf("purge removed the logs: %v", err)
	}
}

// TestDebExampleConfig checks that deploy/spoki.yaml, the package's
// /etc/spoki/spoki.yaml, passes `spoki config check` (config.Check, the
// rules `spoki run` applies) and uses documentation prefixes only.
func TestDebExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "spoki.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if probs := config.Check(data, &cfg, true); len(probs) > 0 {
		t.Fatalf("deploy/spoki.yaml: %+v", probs)
	}
	if len(cfg.Prefixes) == 0 {
		t.Fatal("deploy/spoki.yaml has no prefix")
	}
	doc := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, s := range cfg.Prefixes {
		p := netip.MustParsePrefix(s)
		ok := false
		for _, d := range doc {
			ok = ok || d.Bits() <= p.Bits() && d.Contains(p.Addr())
		}
		if !ok {
			t.Errorf("example prefix %s is no documentation prefix", s)
		}
	}
}
