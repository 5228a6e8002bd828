package netstack

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/tun"
	"github.com/spoki-telescope/spoki/tun/tuntest"
)

// writeLog is a tun.Device over tuntest that records the size of every
// Write and fails the packets it is told to, as a kernel refusing a send.
type writeLog struct {
	*tuntest.Device
	queues []tun.Queue
	mu     sync.Mutex
	writes []int
	fail   map[int]error // packet number (over all writes) -> error
	count  int
}

type writeLogQueue struct {
	tun.Queue
	w *writeLog
}

func newWriteLog(depth int) *writeLog {
	w := &writeLog{Device: tuntest.New(1, 1500, depth), fail: map[int]error{}}
	for _, q := range w.Device.Queues() {
		w.queues = append(w.queues, &writeLogQueue{Queue: q, w: w})
	}
	return w
}

func (w *writeLog) Queues() []tun.Queue { return w.queues }

func (q *writeLogQueue) Write(bufs [][]byte, offset int) (int, error) {
	w := q.w
	w.mu.Lock()
	w.writes = append(w.writes, len(bufs))
	for i := range bufs {
		if err, ok := w.fail[w.count]; ok {
			delete(w.fail, w.count)
			w.count++
			w.mu.Unlock()
			n, _ := q.Queue.Write(bufs[:i], offset)
			return n, err
		}
		w.count++
	}
	w.mu.Unlock()
	return q.Queue.Write(bufs, offset)
}

// TestRepliesBatched checks that the SYN-ACKs to the packets of one Read
// leave in one Write, that a packet the Device refuses is counted by its
// cause and skipped while the rest of the batch is still written, and
// that every SYN keeps its reply row.
func TestRepliesBatched(t *testing.T) {
	w := newWriteLog(64)
	const n = 6 // fewer than tuntest's batch of 8: one Read
	w.fail[1] = syscall.ENOBUFS
	w.fail[4] = syscall.EPERM
	dst := netip.MustParseAddr("198.51.100.8")
	for i := 0; i < n; i++ {
		if !w.Inject(0, seg{src: scanner4, dst: dst, sport: uint16(2000 + i), dport: 80, seq: 1,
			flags: header.TCPFlagSyn}.build()) {
			t.Fatal("inject refused")
		}
	}
	sink := &memSink{}
	st, err := New(Config{Device: w, Prefixes: []netip.Prefix{telescope4}, Sink: sink, SYNACKLimits: &SYNACKLimits{},
		Handle: func(c net.Conn, _ records.Flow) { c.Close() }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	var ports []uint16
	for i := 0; i < n-2; i++ {
		b := w.Next(time.Second)
		if b == nil {
			t.Fatalf("%d SYN-ACKs written, want %d", i, n-2)
		}
		ports = append(ports, tcpOf(b).DestinationPort())
	}
	st.Close()
	if want := []uint16{2000, 2002, 2003, 2005}; !equal(ports, want) {
		t.Errorf("SYN-ACKs to ports %v, want %v (the refused ones skipped, none retried)", ports, want)
	}
	w.mu.Lock()
	writes := append([]int(nil), w.writes...)
	w.mu.Unlock()
	// One batch of 6, then its rest after each refused packet.
	if want := []int{6, 4, 1}; !equal(writes, want) {
		t.Errorf("writes of %v packets, want %v", writes, want)
	}
	s := st.Stats()
	if s.SYNACKsSent.Load() != n || s.TxErrNoBufs.Load() != 1 || s.TxErrDenied.Load() != 1 ||
		s.TxErrUnreachable.Load() != 0 || s.TxErrOther.Load() != 0 {
		t.Errorf("synacks %d, tx errors nobufs %d denied %d unreachable %d other %d; want %d, 1, 1, 0, 0",
			s.SYNACKsSent.Load(), s.TxErrNoBufs.Load(), s.TxErrDenied.Load(), s.TxErrUnreachable.Load(), s.TxErrOther.Load(), n)
	}
	sink.mu.Lock()
	rows := len(sink.replies)
	sink.mu.Unlock()
	if got := rows; got != n {
		t.Errorf("%d reply rows, want %d", got, n)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBatchedSYNAllocatesNothing proves that a SYN read by a TUN reader
// (the batched path: parse, cookie, SYN-ACK encoded into the batch, the
// batch written) allocates nothing, in IPv4 and IPv6, with the plain
// persona and with ones that answer every option.
func TestBatchedSYNAllocatesNothing(t *testing.T) {
	testSYNAllocatesNothing(t, func(s *Stack, pkt []byte) func() {
		fe := &frontEnd{st: s}
		tx := newTxBatch(s.tun.queues[0], &s.stats, 8)
		return func() {
			fe.deliverBatched(packetProto(pkt), pkt, tx)
			tx.flush()
		}
	})
}

// BenchmarkSYNBatched is BenchmarkSYN on a reader's path: the SYN-ACKs are
// queued and written in batches of 64.
func BenchmarkSYNBatched(b *testing.B) {
	s := synStack(b)
	fe := &frontEnd{st: s}
	tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch)
	pkt := testSYN(mssOpt)
	b.ReportAllocs()
	for b.Loop() {
		fe.deliverBatched(packetProto(pkt), pkt, tx)
	}
	tx.flush()
}
