package assemble

import (
	"os"
	"path/filepath"
	"testing"
)

// exampleLogs returns the directory of the example logs (two hours of a
// Spoki lab telescope, tag `test`): $SPOKI_EXAMPLE_LOGS, or
// shared/data/spoki-example-logs in the working directory or one of its
// parents (CI clones the repo with shared/ beside it). Without it the test
// is skipped, except under CI=true, where it fails.
func exampleLogs(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SPOKI_EXAMPLE_LOGS"); d != "" { // WANT
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		c := filepath.Join(dir, "shared", "data", "spoki-example-logs")
		if fi, err := os.Stat(c); err == nil && fi.IsDir() {
			return c
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("example logs not found: set SPOKI_EXAMPLE_LOGS or put shared/data/spoki-example-logs beside the repo")
	}
	t.Skip("example logs not found (shared/data/spoki-example-logs)")
	return ""
}
