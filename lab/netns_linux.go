package lab

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNetns runs fn on an OS thread that has entered the named network
// namespace (one created with `ip netns add`), then returns the thread to
// its namespace. Sockets opened by fn stay in ns for their whole life, so
// fn may open listeners or raw sockets and hand them to other goroutines;
// but goroutines that fn starts run in the original namespace, and so do
// name lookups made through the Go resolver's helper threads.
func InNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked if it cannot be restored, so the runtime
		// throws it away when this goroutine ends instead of reusing a
		// thread in the wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("lab: get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("lab: open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("lab: enter netns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("lab: leave netns %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
