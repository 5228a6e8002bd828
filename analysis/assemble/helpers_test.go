package assemble

import (
	"os"
	"path/filepath"
	"testing"
)

// exampleLogDir is the repository's copy of the example logs (two hours of
// a Spoki lab telescope, tag `test`), relative to this package's directory,
// where `go test` runs. records and analysis/report read the same copy.
var exampleLogDir = filepath.Join("..", "..", "records", "testdata", "spoki-example-logs")

// exampleLogFiles are the files the golden tests read: both hours, both
// log types.
var exampleLogFiles = []string{
	"2021-10-13.21:00:00.test.spoki.tcp.raw.1634158800.csv",
	"2021-10-13.21:00:00.test.spoki.tcp.scamper.1634158800.csv",
	"2021-10-13.22:00:00.test.spoki.tcp.raw.1634162400.csv",
	"2021-10-13.22:00:00.test.spoki.tcp.scamper.1634162400.csv",
}

// exampleLogs returns exampleLogDir, failing the test (never skipping it)
// if one of the files is missing: the data is part of the repository.
func exampleLogs(t testing.TB) string {
	t.Helper()
	for _, f := range exampleLogFiles {
		if _, err := os.Stat(filepath.Join(exampleLogDir, f)); err != nil {
			t.Fatalf("example logs: %v (they belong to the repository: records/testdata)", err)
		}
	}
	return exampleLogDir
}
