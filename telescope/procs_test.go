package telescope

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// TestSetProcs checks that setProcs adds ExtraProcs to the default and
// leaves a GOMAXPROCS from the environment alone.
func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	n, src := setProcs()
	if want := "default+" + strconv.Itoa(ExtraProcs); n != before+ExtraProcs || runtime.GOMAXPROCS(0) != n || src != want {
		t.Errorf("setProcs() = %d, %q (GOMAXPROCS now %d); want %d, %q", n, src, runtime.GOMAXPROCS(0), before+ExtraProcs, want)
	}

	runtime.GOMAXPROCS(before)
	t.Setenv("GOMAXPROCS", "3")
	n, src = setProcs()
	if n != before || runtime.GOMAXPROCS(0) != before || src != "GOMAXPROCS=3" {
		t.Errorf("with GOMAXPROCS=3 set: setProcs() = %d, %q (GOMAXPROCS now %d); want %d (as the runtime read it), \"GOMAXPROCS=3\"", n, src, runtime.GOMAXPROCS(0), before)
	}
}
