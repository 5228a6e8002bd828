package netstack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
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
		tx := newTxBatch(s.tun.queues[0], &s.stats, 8, nil)
		pkts, sizes := [][]byte{pkt}, []int{len(pkt)}
		return func() { readBatch(fe, tx, pkts, sizes) }
	})
}

// BenchmarkSYNBatched is BenchmarkSYN on a reader's path: the SYN-ACKs are
// queued and written in batches of 64.
func BenchmarkSYNBatched(b *testing.B) {
	s := synStack(b)
	fe := &frontEnd{st: s}
	tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch, nil)
	pkt := testSYN(mssOpt)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%tun.MaxBatch == 0 {
			fe.stamp(tx)
		}
		fe.deliverBatched(packetProto(pkt), pkt, tx)
	}
	tx.flush()
}

// batchSink is a memSink that also takes batches, and counts how the
// records came.
type batchSink struct {
	memSink
	calls  [][2]int // per Records call: packets, replies
	single int      // Packet and Reply calls
}

func (b *batchSink) Packet(p records.Packet) {
	b.mu.Lock()
	b.single++
	b.mu.Unlock()
	b.memSink.Packet(p)
}

func (b *batchSink) Reply(r records.Reply) {
	b.mu.Lock()
	b.single++
	b.mu.Unlock()
	b.memSink.Reply(r)
}

func (b *batchSink) Records(pkts []records.Packet, reps []records.Reply) {
	b.mu.Lock()
	b.calls = append(b.calls, [2]int{len(pkts), len(reps)})
	b.packets = append(b.packets, pkts...)
	b.replies = append(b.replies, reps...)
	b.mu.Unlock()
}

// TestRecordsBatched checks that with a BatchSink the rows of one Read's
// SYNs and their SYN-ACKs' reply rows reach the sink in one Records call,
// none through Packet or Reply, each reply row joined to its SYN's row.
func TestRecordsBatched(t *testing.T) {
	w := newWriteLog(64)
	const n = 6 // fewer than tuntest's batch of 8: one Read
	dst := netip.MustParseAddr("198.51.100.8")
	for i := 0; i < n; i++ {
		if !w.Inject(0, seg{src: scanner4, dst: dst, sport: uint16(2000 + i), dport: 80, seq: 1,
			flags: header.TCPFlagSyn}.build()) {
			t.Fatal("inject refused")
		}
	}
	sink := &batchSink{}
	st, err := New(Config{Device: w, Prefixes: []netip.Prefix{telescope4}, Sink: sink, SYNACKLimits: &SYNACKLimits{},
		Handle: func(c net.Conn, _ records.Flow) { c.Close() }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	for i := 0; i < n; i++ {
		if w.Next(time.Second) == nil {
			t.Fatalf("%d SYN-ACKs written, want %d", i, n)
		}
	}
	st.Close()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if want := [][2]int{{n, n}}; !equal(sink.calls, want) {
		t.Errorf("Records calls of (packets, replies) %v, want %v", sink.calls, want)
	}
	if sink.single != 0 {
		t.Errorf("%d Packet and Reply calls, want none with a BatchSink", sink.single)
	}
	if len(sink.packets) != n || len(sink.replies) != n {
		t.Fatalf("%d packet rows and %d reply rows, want %d each", len(sink.packets), len(sink.replies), n)
	}
	for i, p := range sink.packets {
		r := sink.replies[i]
		if p.SrcPort != uint16(2000+i) || !p.Probed || p.UserID == 0 || r.UserID != p.UserID ||
			r.Dst != p.Src || r.DstPort != p.SrcPort || r.Method != records.MethodSYNACK {
			t.Errorf("row %d: packet %+v, reply %+v: not the SYN from port %d and its SYN-ACK", i, p, r, 2000+i)
		}
	}
}

// TestBatchedRecordsAllocateNothing is TestBatchedSYNAllocatesNothing with
// a BatchSink: the rows queued on the batch and handed over allocate
// nothing.
func TestBatchedRecordsAllocateNothing(t *testing.T) {
	testSYNAllocatesNothing(t, func(s *Stack, pkt []byte) func() {
		s.sink = discardBatchSink{}
		fe := &frontEnd{st: s}
		tx := newTxBatch(s.tun.queues[0], &s.stats, 8, fe.batchSink())
		if tx.sink == nil {
			t.Fatal("no batch sink: the path measured is not the batched one")
		}
		return func() {
			fe.stamp(tx)
			fe.deliverBatched(packetProto(pkt), pkt, tx)
			tx.flush()
		}
	})
}

type discardBatchSink struct{}

func (discardBatchSink) Packet(records.Packet)                     {}
func (discardBatchSink) Reply(records.Reply)                       {}
func (discardBatchSink) Records([]records.Packet, []records.Reply) {}

// readBatch is what the reader loop (tunLink.read) does with the packets
// of one Read, of sizes as Read reports them.
func readBatch(fe *frontEnd, tx *txBatch, pkts [][]byte, sizes []int) {
	fe.stamp(tx)
	fe.touch(pkts, sizes, tx)
	for j, p := range pkts {
		p = p[:sizes[j]]
		fe.deliverBatched(packetProto(p), p, tx)
	}
	tx.flush()
}

// packetSizes are the lengths of pkts, as a Read of them reports them.
func packetSizes(pkts [][]byte) []int {
	sizes := make([]int, len(pkts))
	for i, p := range pkts {
		sizes[i] = len(p)
	}
	return sizes
}

// floodSYNs are n irregular SYNs (no options, TTL 241, IP ID 54321, as
// the scanners of a flood send them) from as many sources of the
// benchmarking prefix 198.18.0.0/15 to the telescope, each to another
// port.
func floodSYNs(n int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		src := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		pkts[i] = seg{src: src, dst: netip.MustParseAddr("198.51.100.7"),
			sport: uint16(40000 + i), dport: uint16(1 + i%1024), seq: uint32(i) * 7919,
			flags: header.TCPFlagSyn, ttl: 241, ipid: 54321, window: 1024}.build()
	}
	return pkts
}

// floodFrontEnd is the front end of the reader benchmarks, set up as in
// spoki run: the cookie clock the stack's real one, the SYN limiter on with
// its defaults, the records going to a BatchSink that discards them.
func floodFrontEnd(b testing.TB) (*Stack, *frontEnd) {
	s := synStack(b)
	j, err := newCookieJar(tcpip.NewStdClock())
	if err != nil {
		b.Fatal(err)
	}
	s.jar = j
	s.limit = newSYNLimiter(DefaultSYNACKLimits())
	s.sink = discardBatchSink{}
	return s, &frontEnd{st: s}
}

// BenchmarkReaderFlood is a TUN reader's work per SYN under a flood, as
// in spoki run: irregular SYNs from many sources handed to the front end
// in Reads of 64, the SYN limiter on with its defaults, the cookie clock
// the stack's real one, the records handed to a BatchSink per Read and
// the SYN-ACKs written per Read. It reports ns per SYN.
func BenchmarkReaderFlood(b *testing.B) {
	s, fe := floodFrontEnd(b)
	tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch, fe.batchSink())
	// 16,384 sources: each sends one SYN per 16,384, some 300 a second
	// at 200 ns per SYN, under the irregular limit (500/s), so that no
	// -benchtime spends their budgets; their limiter entries (256 KiB)
	// stay in the cache, as a flood's few sources do.
	pkts := floodSYNs(tun.MaxBatch * 256)
	b.ReportAllocs()
	i := 0
	sizes := packetSizes(pkts[:tun.MaxBatch])
	for b.Loop() {
		readBatch(fe, tx, pkts[i:i+tun.MaxBatch], sizes)
		i = (i + tun.MaxBatch) % len(pkts)
	}
	b.StopTimer()
	checkFloodPath(b, s)
	reportPerSYN(b, b.Elapsed(), "ns/SYN")
}

// BenchmarkReaderFloodSpoofed is BenchmarkReaderFlood with the sources
// of a spoofed flood: each SYN from a random address of 198.18.0.0/15
// (131,072 sources, twice the SYN limiter's default entries), so that the
// limiter's whole table is in use, where BenchmarkReaderFlood's 16,384
// sources touch the same 16,384 entries over and over and keep them in
// cache.
// The Read's packets are rewritten in place in the reader's 64 buffers,
// as a Read leaves them: the new source and both checksums updated.
func BenchmarkReaderFloodSpoofed(b *testing.B) {
	s, fe := floodFrontEnd(b)
	tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch, fe.batchSink())
	pkts := floodSYNs(tun.MaxBatch)
	sizes := packetSizes(pkts)
	x := uint32(0x9e3779b9)
	b.ReportAllocs()
	for b.Loop() {
		respoofRead(pkts, &x)
		readBatch(fe, tx, pkts, sizes)
	}
	b.StopTimer()
	checkFloodPath(b, s)
	reportPerSYN(b, b.Elapsed(), "ns/SYN")
}

// BenchmarkReaderFloodTouch is BenchmarkReaderFloodSpoofed with every
// other Read handled without the reader's touch of the SYNs' limiter
// entries (frontEnd.touch), in turn first and second, and each kind of
// Read timed apart: ns/SYN-touch and ns/SYN-no-touch are what a SYN costs
// with and without it, measured side by side so that the load of the
// machine weighs on both alike.
func BenchmarkReaderFloodTouch(b *testing.B) {
	s, fe := floodFrontEnd(b)
	tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch, fe.batchSink())
	pkts := floodSYNs(tun.MaxBatch)
	sizes := packetSizes(pkts)
	x := uint32(0x9e3779b9)
	var spent [2]time.Duration // without, with
	read := func(touch int) {
		respoofRead(pkts, &x)
		t0 := time.Now()
		fe.stamp(tx)
		if touch == 1 {
			fe.touch(pkts, sizes, tx)
		}
		for _, p := range pkts {
			fe.deliverBatched(packetProto(p), p, tx)
		}
		tx.flush()
		spent[touch] += time.Since(t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		read(i & 1)
		read(1 - i&1)
		i++
	}
	b.StopTimer()
	checkFloodPath(b, s)
	reportPerSYN(b, spent[1], "ns/SYN-touch")
	reportPerSYN(b, spent[0], "ns/SYN-no-touch")
}

// respoofRead gives each packet of a Read a new source, a random address
// of 198.18.0.0/15 drawn from the xorshift state *x: the sources of a
// spoofed flood.
func respoofRead(pkts [][]byte, x *uint32) {
	for _, p := range pkts {
		*x ^= *x << 13
		*x ^= *x >> 17
		*x ^= *x << 5
		respoof(p, [4]byte{198, 18 + byte(*x>>16&1), byte(*x >> 8), byte(*x)})
	}
}

// respoof sets the source of p, an IPv4 TCP segment with a 20-byte IP
// header, to src, and updates the IP and TCP checksums for it (RFC 1624).
func respoof(p []byte, src [4]byte) {
	upd := func(sum []byte) {
		c := uint32(^binary.BigEndian.Uint16(sum))
		for i := 12; i < 16; i += 2 {
			c += uint32(^binary.BigEndian.Uint16(p[i:])) + (uint32(src[i-12])<<8 | uint32(src[i-11]))
		}
		c = c&0xffff + c>>16
		c = c&0xffff + c>>16
		binary.BigEndian.PutUint16(sum, ^uint16(c))
	}
	upd(p[10:12])
	upd(p[20+16 : 20+18])
	copy(p[12:16], src[:])
}

// BenchmarkReaderFloodParallel is BenchmarkReaderFloodSpoofed with one reader
// per P at once, as the TUN queues run: what the readers cost each other
// (the shared counters and user ids) shows against it. Its B/op is the
// readers' batches, made once per goroutine.
func BenchmarkReaderFloodParallel(b *testing.B) {
	s, fe := floodFrontEnd(b)
	var seed atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		tx := newTxBatch(s.tun.queues[0], &s.stats, tun.MaxBatch, fe.batchSink())
		// Each reader its own Read's buffers, with the sources of a
		// spoofed flood as in BenchmarkReaderFloodSpoofed: fixed
		// sources would spend their SYN-ACK budgets once the readers
		// are fast enough, and the SYNs would then take the limited path.
		pkts := floodSYNs(tun.MaxBatch)
		sizes := packetSizes(pkts)
		x := 0x9e3779b9 + seed.Add(0x6d2b79f5)
		for pb.Next() {
			respoofRead(pkts, &x)
			readBatch(fe, tx, pkts, sizes)
		}
	})
	b.StopTimer()
	checkFloodPath(b, s)
	reportPerSYN(b, b.Elapsed(), "ns/SYN")
}

// checkFloodPath fails a reader benchmark whose SYNs did not all take the
// flood's path: a SYN limited or a checksum found bad would have timed the
// cheaper drop instead, and no SYN-ACK at all a front end that answered
// nothing.
func checkFloodPath(b *testing.B, s *Stack) {
	sent, limited, bad := s.stats.SYNACKsSent.Load(), s.stats.DropSYNRateIrregular.Load(), s.stats.DropBadChecksum.Load()
	if sent == 0 || limited != 0 || bad != 0 {
		b.Fatalf("%d SYN-ACKs, %d limited, %d bad checksums: not the flood's path", sent, limited, bad)
	}
}

// reportPerSYN reports d spread over the benchmark's SYNs (b.N Reads of
// tun.MaxBatch) as the metric unit.
func reportPerSYN(b *testing.B, d time.Duration, unit string) {
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N*tun.MaxBatch), unit)
}
