package prod

import "os"

// Production code names the operator's directories; it is not checked.
func Open() (*os.File, error) { return os.Open("/var/lib/spoki/x") }
