package scenarios

import (
	"embed"
	"io/fs"
	"path"
	"sort"
)

// builtinFS holds the built-in scenarios: one behaviour per .pkt file, in
// feature folders, and the shared include files of common/.
//
//go:embed */*.pkt common/*.inc
var builtinFS embed.FS

// Builtin returns the file system of the built-in scenarios, for
// ParseFile.
func Builtin() fs.FS { return builtinFS }

// BuiltinNames lists the built-in scenario files (FOLDER/NAME.pkt), sorted.
func BuiltinNames() []string {
	var names []string
	_ = fs.WalkDir(builtinFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path.Ext(p) == ".pkt" {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	return names
}
