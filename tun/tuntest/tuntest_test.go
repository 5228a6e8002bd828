package tuntest

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestDevice checks the double's contract: batches up to the buffers
// given, bounded queues that drop and count, written packets copied out,
// and reads woken by a deadline and by Close.
func TestDevice(t *testing.T) {
	d := New(2, 1500, 3)
	for i := byte(0); i < 4; i++ {
		ok := d.Inject(1, []byte{0x45, i})
		if want := i < 3; ok != want {
			t.Errorf("Inject %d = %v, want %v (depth 3)", i, ok, want)
		}
	}
	if _, tx, drop, _ := d.Stats(); tx != 3 || drop != 1 {
		t.Errorf("tx %d dropped %d, want 3 and 1", tx, drop)
	}
	q := d.Queues()[1]
	bufs := [][]byte{make([]byte, 16), make([]byte, 16)}
	sizes := make([]int, 2)
	if n, err := q.Read(bufs, sizes, 2); n != 2 || err != nil || sizes[1] != 2 || bufs[1][3] != 1 {
		t.Errorf("Read = %d, %v, sizes %v, bufs %v; want a batch of 2 at offset 2", n, err, sizes, bufs)
	}
	if n, _ := q.Read(bufs, sizes, 0); n != 1 || bufs[0][1] != 2 {
		t.Errorf("second Read = %d (%v), want the third packet", n, bufs[0][:sizes[0]])
	}

	w := []byte{0, 0, 0x60, 7}
	if n, err := d.Queues()[0].Write([][]byte{w}, 2); n != 1 || err != nil {
		t.Errorf("Write = %d, %v", n, err)
	}
	w[3] = 8
	if got := d.Next(time.Second); len(got) != 2 || got[1] != 7 {
		t.Errorf("Next = %v, want a copy of [0x60 7]", got)
	}
	if d.Next(10*time.Millisecond) != nil {
		t.Error("Next returned a packet never written")
	}

	errc := make(chan error, 1)
	go func() { _, err := q.Read(bufs, sizes, 0); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	q.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline = %v", err)
	}
	q.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := q.Read(bufs, sizes, 0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with a deadline 20ms ahead = %v", err)
	}
	q.SetReadDeadline(time.Time{})
	d.Inject(1, []byte{0x45})
	if n, err := q.Read(bufs, sizes, 0); n != 1 || err != nil {
		t.Errorf("Read after clearing the deadline = %d, %v", n, err)
	}
	go func() { _, err := q.Read(bufs, sizes, 0); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	d.Close()
	if err := <-errc; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	if d.Inject(0, []byte{0x45}) {
		t.Error("Inject into a closed device succeeded")
	}

	sink := New(1, 1500, 0)
	sink.Queues()[0].Write([][]byte{{0x45}}, 0)
	if rx, _, _, _ := sink.Stats(); rx != 1 || sink.WriteDropped() != 1 {
		t.Errorf("depth 0: rx %d, discarded %d; want 1 and 1", rx, sink.WriteDropped())
	}
}
