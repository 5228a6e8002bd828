package netstack

import (
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
)

var (
	// ErrConfig means the Config is unusable; the caller must fix it.
	ErrConfig = errors.New("netstack: bad config")
	// ErrGVisor wraps an error reported by gVisor.
	ErrGVisor = errors.New("netstack: gvisor")
	// errTx means the link refused a SYN-ACK (queue full); counted, not fatal.
	errTx = errors.New("netstack: link refused packet")
)

// gvErr converts a tcpip.Error, which is not a Go error, once, at the edge.
func gvErr(op string, e tcpip.Error) error {
	if e == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrGVisor, op, e)
}
