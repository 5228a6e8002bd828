// Command debpkg builds spoki's Debian package (make deb): see package
// internal/debpkg.
//
//	go run ./deploy/debpkg --bin bin/spoki --version "$(git describe --tags --always --dirty)" --out bin
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/spoki-telescope/spoki/internal/debpkg"
)

func main() {
	var o debpkg.Options
	flag.StringVar(&o.Binary, "bin", "bin/spoki", "the built spoki `FILE`")
	flag.StringVar(&o.Root, "root", ".", "the repository `DIR` (deploy/, README.md)")
	flag.StringVar(&o.Version, "version", "", "`git describe` output or a Debian version (empty: 0.0.0~dev)")
	flag.StringVar(&o.Arch, "arch", "", "Go architecture of the binary (default: this machine's)")
	flag.StringVar(&o.Maintainer, "maintainer", debpkg.DefaultMaintainer, "the package's Maintainer")
	flag.StringVar(&o.OutDir, "out", "bin", "`DIR` for spoki_VERSION_ARCH.deb")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "debpkg: no arguments expected")
		os.Exit(2)
	}
	path, err := debpkg.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
