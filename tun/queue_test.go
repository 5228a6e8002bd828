package tun

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestLinuxQueues checks the Linux Device's queues: a packet the kernel
// routes to the prefix is read from a queue, a packet written to a queue
// reaches the kernel (its receive counter), a read deadline wakes a
// blocked Read with the device still open, one that passes while Read
// waits ends it, and Close wakes it for good.
func TestLinuxQueues(t *testing.T) {
	inNewNetns(t, func() {
		b := make([]byte, 3)
		rand.Read(b)
		name := "spkq" + hex.EncodeToString(b)
		d, err := Open(Config{Name: name, Queues: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		if err != nil {
			t.Errorf("Open: %v", err)
			return
		}
		defer d.Close()
		var dev Device = d
		if len(dev.Queues()) != 2 || dev.BatchSize() != MaxBatch || dev.MTU() != DefaultMTU || dev.Name() != name {
			t.Errorf("queues %d, batch %d, mtu %d, name %q", len(dev.Queues()), dev.BatchSize(), dev.MTU(), dev.Name())
		}

		// The kernel picks the queue of a flow: read both.
		got := make(chan []byte, 2)
		for _, q := range dev.Queues() {
			// Set here, not in the reader: a reader that starts after
			// the other has its packet would undo the wake-up below.
			q.SetReadDeadline(time.Now().Add(5 * time.Second))
			go func() {
				bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
				for {
					n, err := q.Read(bufs, sizes, 0)
					if err != nil {
						got <- nil
						return
					}
					if n == 1 && header4UDP(bufs[0][:sizes[0]]) {
						got <- append([]byte(nil), bufs[0][:sizes[0]]...)
						return
					}
				}
			}()
		}
		c, err := net.Dial("udp4", "198.51.100.5:9")
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		c.Write([]byte("probe"))
		c.Close()
		var pkt []byte
		for i := 0; i < 2; i++ {
			if p := <-got; p != nil {
				pkt = p
				// The other reader waits in vain: wake it.
				for _, q := range dev.Queues() {
					q.SetReadDeadline(time.Unix(1, 0))
				}
			}
		}
		if pkt == nil {
			t.Error("the routed UDP packet was not read from a queue")
			return
		}

		// Written back with the addresses swapped (behind an offset of 4
		// bytes), it is a packet the kernel receives from the device.
		// (The checksums do not change: they sum the addresses.)
		rx0, _, _, _ := dev.Stats()
		out := append([]byte(nil), pkt...)
		copy(out[12:16], pkt[16:20])
		copy(out[16:20], pkt[12:16])
		if n, err := dev.Queues()[1].Write([][]byte{append(make([]byte, 4), out...)}, 4); n != 1 || err != nil {
			t.Errorf("Write = %d, %v; want 1, nil", n, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			rx, _, _, err := dev.Stats()
			if err == nil && rx > rx0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("kernel rx stays %d after a Write", rx)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}

		q := dev.Queues()[0]
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		errc := make(chan error, 1)
		q.SetReadDeadline(time.Time{})
		go func() {
			_, err := q.Read(bufs, sizes, 0)
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		q.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Read after the deadline = %v, want os.ErrDeadlineExceeded", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("a read deadline in the past did not wake a blocked Read")
		}
		if _, _, _, err := dev.Stats(); err != nil {
			t.Errorf("Stats after the deadline: %v (the device must stay open)", err)
		}
		// A deadline that passes while Read waits ends it, with nothing
		// to wake it but its own timeout.
		q.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		go func() {
			_, err := q.Read(bufs, sizes, 0)
			errc <- err
		}()
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Read past a future deadline = %v, want os.ErrDeadlineExceeded", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("a read deadline that passed while Read waited did not end it")
		}
		q.SetReadDeadline(time.Time{})
		go func() {
			_, err := q.Read(bufs, sizes, 0)
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("Read after Close = %v, want os.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Close did not wake a blocked Read")
		}
	})
}

// header4UDP reports whether b is an IPv4 UDP packet.
func header4UDP(b []byte) bool {
	return len(b) >= 20 && b[0]>>4 == 4 && b[9] == syscall.IPPROTO_UDP
}
