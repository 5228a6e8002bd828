package lab

import "errors"

// ErrBadName is returned by New when Config.Name does not fit the interface
// names derived from it. The caller should pick another name.
var ErrBadName = errors.New("lab: bad name")

// ErrClosed is returned by the methods of a Lab after Close. The caller
// should stop: the namespaces are gone.
var ErrClosed = errors.New("lab: closed")

// ErrTimeout is returned by Process.WaitFor when the awaited line did not
// appear in time. The process is still running; the caller usually stops it.
var ErrTimeout = errors.New("lab: timeout")

// ErrExited is returned by Process.WaitFor when the process ended before the
// awaited line appeared. The caller should stop and report the output.
var ErrExited = errors.New("lab: process exited")

// ErrKilled is returned by Process.Stop when the process ignored SIGTERM and
// had to be killed: it did not flush and exit as spoki run must on SIGTERM.
var ErrKilled = errors.New("lab: process killed after stop timeout")

// ErrSYNMismatch is returned by the syn probe's CLI when a target did not get
// exactly one SYN-ACK. The results are still printed.
var ErrSYNMismatch = errors.New("lab: target did not get exactly one SYN-ACK")

// ErrNoNeighbour is returned by Flood when the destination MAC address could
// not be found in the neighbour table. The caller should pass DstMAC.
var ErrNoNeighbour = errors.New("lab: no neighbour entry")

// ErrDemoFailed is returned by Demo when spoki failed or expected events are
// missing from its event log. The details have been printed.
var ErrDemoFailed = errors.New("lab: demo failed")
