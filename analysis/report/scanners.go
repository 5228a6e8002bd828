package report

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// builtinScanners are topports' hard-coded prefixes, checked first and in
// this order.
var builtinScanners = []struct {
	name     string
	prefixes []string
}{
	{"censys", []string{"198.108.66.0/23", "192.35.168.0/23"}},
	{"kudelski", []string{"185.35.62.0/23"}},
	{"rapid7", []string{"5.63.151.96/27", "71.6.233.0/24", "88.202.190.128/27", "146.185.25.160/27", "109.123.117.224/27"}},
	{"shadowserver", []string{"184.105.139.64/26", "184.105.247.192/26", "216.218.206.64/26", "74.82.47.0/26", "65.49.20.64/26"}},
}

// KnownScanners tells the addresses of known research scanners.
type KnownScanners struct {
	prefixes []namedPrefix
	addrs    map[netip.Addr]string
}

type namedPrefix struct {
	name string
	p    netip.Prefix
}

// LoadKnownScanners returns the built-in prefixes plus the lists
// dir/ips.NAME.txt (one address or prefix per line; '#' starts a comment).
// A missing dir is no error; dir "" means the built-ins only.
func LoadKnownScanners(dir string) (*KnownScanners, error) {
	ks := &KnownScanners{addrs: map[netip.Addr]string{}}
	for _, s := range builtinScanners {
		for _, p := range s.prefixes {
			ks.prefixes = append(ks.prefixes, namedPrefix{s.name, netip.MustParsePrefix(p)})
		}
	}
	if dir == "" {
		return ks, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "ips.*.txt"))
	if err != nil {
		return nil, fmt.Errorf("report: known scanners: %w", err)
	}
	slices.Sort(files)
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "ips."), ".txt")
		if err := ks.loadList(f, name); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("report: known scanners: %w", err)
	}
	return ks, nil
}

func (ks *KnownScanners) loadList(path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("report: known scanners: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, "/") {
			p, err := netip.ParsePrefix(line)
			if err != nil {
				return fmt.Errorf("report: known scanners %s:%d: %w", path, n, err)
			}
			ks.prefixes = append(ks.prefixes, namedPrefix{name, p.Masked()})
			continue
		}
		a, err := netip.ParseAddr(line)
		if err != nil {
			return fmt.Errorf("report: known scanners %s:%d: %w", path, n, err)
		}
		if _, dup := ks.addrs[a.Unmap()]; !dup {
			ks.addrs[a.Unmap()] = name // the first list naming it wins
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("report: known scanners %s: %w", path, err)
	}
	return nil
}

// Lookup returns the name of the scanner a belongs to. The built-in
// prefixes are checked before the lists, as in the original.
func (ks *KnownScanners) Lookup(a netip.Addr) (string, bool) {
	a = a.Unmap()
	for _, p := range ks.prefixes {
		if p.p.Contains(a) {
			return p.name, true
		}
	}
	name, ok := ks.addrs[a]
	return name, ok
}
