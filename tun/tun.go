// Package tun opens the TUN device the telescope prefixes are routed to,
// adds and removes those routes, and hands the netstack a Device: queues of
// IP packets read and written in batches, in the spirit of wireguard-go's
// tun.Device. It is the only package that talks to the kernel's network
// configuration; the netstack never sees a file descriptor. Package
// tun/tuntest is an in-memory Device for tests. Dropping privileges once
// the device and routes are up is package privs's job.
package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Device is a TUN device: one or more queues of IP packets (no link-layer
// header, no packet information prefix), each read by one goroutine.
type Device interface {
	// Queues returns the device's queues, one reader each; the slice is
	// the Device's and stays the same for its life.
	Queues() []Queue
	// MTU is the largest packet the device carries.
	MTU() int
	// Name is the kernel's name of the device.
	Name() string
	// BatchSize is the most packets one Read returns and the length of
	// bufs and sizes a reader should pass.
	BatchSize() int
	// Stats reads the device's counters: packets the device received
	// from the netstack (rx) and handed to it (tx), and those it could
	// not queue for the netstack (txDropped: the overload signal).
	Stats() (rxPackets, txPackets, txDropped uint64, err error)
	// Close closes every queue and removes the device with its routes.
	// It is safe to call more than once.
	Close() error
}

// Queue is one queue of a Device. Read is called by one goroutine at a
// time; Write may be called by any number at once and never blocks.
type Queue interface {
	// Read reads up to len(bufs) packets (at most the Device's
	// BatchSize), packet i into bufs[i][offset:] with its length in
	// sizes[i], and returns how many it read. It blocks until at least
	// one packet is there, the read deadline passes
	// (os.ErrDeadlineExceeded) or the Device is closed (os.ErrClosed).
	// A buffer shorter than the MTU may cut a packet.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write writes the packets bufs[i][offset:] and returns how many it
	// wrote; on an error, the packets after the n-th were not written.
	Write(bufs [][]byte, offset int) (n int, err error)
	// SetReadDeadline makes a Read blocked now or later return
	// os.ErrDeadlineExceeded once t has passed (at once for a time in the
	// past; never for the zero time), so that the reader can stop while
	// the device stays open (its counters are read after the netstack
	// stops).
	SetReadDeadline(t time.Time) error
}

// Defaults for Config.
const (
	// DefaultName is the TUN device name when Config.Name is empty.
	DefaultName = "spoki0"
	// DefaultMTU matches an Ethernet upstream: a telescope only ever sees
	// packets that crossed one.
	DefaultMTU = 1500
	// DefaultTxQueueLen is the kernel queue in front of each TUN queue. It is
	// the only buffer between the kernel and the netstack (one reader per
	// queue delivers inline), so it sets how much of a burst is absorbed
	// before the kernel drops; the kernel default of 500 is far too short for
	// a flood.
	DefaultTxQueueLen = 10000
)

// ErrExists is returned when a link of the requested name already exists.
// Opening it anyway would silently attach to another process's multi-queue
// device, so the caller must pick another name.
var ErrExists = errors.New("tun: device already exists")

// Config says which device to create.
type Config struct {
	// Name of the device; DefaultName if empty.
	Name string
	// Queues is the number of multi-queue file descriptors; 1 if zero.
	Queues int
	// MTU of the device; DefaultMTU if zero.
	MTU int
	// TxQueueLen of the device; DefaultTxQueueLen if zero.
	TxQueueLen int
	// Prefixes are routed to the device unless NoRoute is set.
	Prefixes []netip.Prefix
	// NoRoute leaves routing to the operator.
	NoRoute bool
	// RawReplies sends what the queues write on raw IP sockets, in
	// sendmmsg batches through the host's routing, instead of writing each
	// packet to the TUN for the kernel to forward. It needs CAP_NET_RAW at
	// Open; without it the queues write to the TUN (Linux.RawReplies
	// says which).
	RawReplies bool
}

// ParsePrefix parses a telescope prefix and rejects host bits and prefixes
// that would swallow a whole address family by mistake.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	if p.Bits() < 8 || (p.Addr().Is6() && p.Bits() < 16) {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: shorter than /%s", s, strconv.Itoa(map[bool]int{true: 16, false: 8}[p.Addr().Is6()]))
	}
	return p, nil
}
