package tunecho

import (
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/tun"
)

// syn returns an IPv4 SYN 192.0.2.1:40000 → 198.51.100.7:80 with seq
// 1000 (checksums left zero: synAckInPlace computes them).
func syn() []byte {
	b := make([]byte, 40)
	b[0], b[8], b[9] = 0x45, 255, 6
	binary.BigEndian.PutUint16(b[2:], 40)
	copy(b[12:16], []byte{192, 0, 2, 1})
	copy(b[16:20], []byte{198, 51, 100, 7})
	t := b[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 80)
	binary.BigEndian.PutUint32(t[4:], 1000)
	t[12], t[13] = 5<<4, 0x02
	return b
}

// TestSYNAckInPlace checks the SYN-ACK the echo writes back: addresses and
// ports swapped, SYN|ACK acking seq+1, and both checksums valid.
func TestSYNAckInPlace(t *testing.T) {
	b := syn()
	if !synAckInPlace(b) {
		t.Fatal("synAckInPlace(SYN) = false")
	}
	tcp := b[20:]
	if string(b[12:16]) != string([]byte{198, 51, 100, 7}) || string(b[16:20]) != string([]byte{192, 0, 2, 1}) {
		t.Errorf("addresses %v → %v, want swapped", b[12:16], b[16:20])
	}
	if sp, dp := binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:]); sp != 80 || dp != 40000 {
		t.Errorf("ports %d → %d, want 80 → 40000", sp, dp)
	}
	if tcp[13] != 0x12 || binary.BigEndian.Uint32(tcp[8:]) != 1001 {
		t.Errorf("flags %#x ack %d, want 0x12 and 1001", tcp[13], binary.BigEndian.Uint32(tcp[8:]))
	}
	if s := sum16(b[:20], 0); s != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: sum %#x", s)
	}
	var ph [12]byte
	copy(ph[0:8], b[12:20])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(len(tcp)))
	if s := sum16(tcp, sum16(ph[:], 0)); s != 0xffff {
		t.Errorf("TCP checksum does not verify: sum %#x", s)
	}
	ack := syn()
	ack[33] = 0x10
	if synAckInPlace(ack) {
		t.Error("synAckInPlace(ACK) = true, want false")
	}
}

// recordQueue is a tun.Queue whose Write records each call's packets and
// refuses the packets it is told to, by their order over all writes.
type recordQueue struct {
	tun.Queue
	mu     sync.Mutex
	writes [][][]byte
	refuse map[int]bool
	seen   int
}

func (q *recordQueue) Write(bufs [][]byte, offset int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var w [][]byte
	for i, b := range bufs {
		w = append(w, append([]byte(nil), b[offset:]...))
		if q.refuse[q.seen] {
			q.seen++
			q.writes = append(q.writes, w)
			return i, unix.ENOBUFS
		}
		q.seen++
	}
	q.writes = append(q.writes, w)
	return len(bufs), nil
}

// TestBatched checks the batched mode: the SYN-ACKs of the packets queued
// at one wake-up leave in one Write, a non-SYN is only counted, a packet
// the Queue refuses is counted and skipped and the rest of its batch sent.
func TestBatched(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	const n = 5
	for i := 0; i < n; i++ {
		b := syn()
		binary.BigEndian.PutUint16(b[20:], uint16(40000+i))
		if _, err := unix.Write(fds[0], b); err != nil {
			t.Fatal(err)
		}
	}
	ack := syn()
	ack[33] = 0x10
	unix.Write(fds[0], ack)
	q := &recordQueue{refuse: map[int]bool{2: true}}
	e := StartBatched([]int{fds[1]}, []tun.Queue{q})
	deadline := time.Now().Add(5 * time.Second)
	for {
		sent, other := e.sent.Load(), e.other.Load()
		if sent+e.Failed() == n && other == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, failed %d, other %d; want %d, 1, 1", sent, e.Failed(), other, n-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	sent, other := e.Stop()
	if sent != n-1 || e.Failed() != 1 || other != 1 {
		t.Errorf("sent %d, failed %d, other %d; want %d, 1, 1", sent, e.Failed(), other, n-1)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// One batch of 5 refused at its third packet, then its last two.
	if len(q.writes) != 2 || len(q.writes[0]) != 3 || len(q.writes[1]) != 2 {
		var sizes []int
		for _, w := range q.writes {
			sizes = append(sizes, len(w))
		}
		t.Fatalf("writes of %v packets, want [3 2]", sizes)
	}
	var ports []uint16
	for _, w := range q.writes {
		for _, b := range w {
			if b[33] != 0x12 {
				t.Errorf("written flags %#x, want SYN|ACK", b[33])
			}
			ports = append(ports, binary.BigEndian.Uint16(b[22:]))
		}
	}
	if want := []uint16{40000, 40001, 40002, 40003, 40004}; !slices.Equal(ports, want) {
		t.Errorf("SYN-ACKs to ports %v, want %v (the third offered once, refused)", ports, want)
	}
}
