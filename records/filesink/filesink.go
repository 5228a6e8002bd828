// Package filesink writes spoki's records to hourly files: the
// Spoki-compatible raw CSV logs (TCP, UDP, ICMP), the reply (scamper) log and
// the JSON-lines event log (docs/formats.md). It sits at the end of the
// flow, off the hot path: the packet path hands records to non-blocking
// enqueue methods, and a single writer goroutine encodes and writes them.
//
// Files are named by the hour of the record's own time (UTC), never the wall
// clock; they are created lazily in append mode and get their header only
// when new. The current and previous hour of each log stay open; a record
// for an older hour reopens that hour's file in append mode and is never
// dropped for its age.
//
// For months of running, a maintenance goroutine gzips the files of finished
// hours in the background (Config.Compress) and removes files older than
// Config.Keep. A full disk never blocks the packet path: rows wait in a
// bounded buffer, are dropped and counted beyond it, the loss is logged once
// per minute, and writing resumes by itself when space returns.
package filesink

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Defaults for the zero values of Config.
const (
	// DefaultPacketQueue holds an eighth of a second of a 130k pps flood: the
	// writer drains over a million records a second, and the queue memory
	// counts against the RSS budget.
	DefaultPacketQueue = 1 << 14
	// DefaultReplyQueue matches the packet queue: at most one reply per packet.
	DefaultReplyQueue = 1 << 14
	// DefaultEventQueue is smaller: sessions and later events are rare (SYN
	// events are made by the writer from the packet queue).
	DefaultEventQueue = 4096
	// DefaultFlushInterval bounds how long written records wait in memory, so
	// that the files can be tailed.
	DefaultFlushInterval = time.Second
	// DefaultTag is the tag of file names when Config.Tag is empty, as in Spoki.
	DefaultTag = "untagged"
	// DefaultCompressWorkers is one: a closed hour has until the next one
	// closes to be compressed, and one goroutine keeps up with the SYN rates
	// one TUN reader answers; more take CPU from the readers in bursts.
	DefaultCompressWorkers = 1
	// MaxCompressWorkers bounds Config.CompressWorkers and so the memory of
	// a compression (up to about 1.5 MiB a worker).
	MaxCompressWorkers = 64
)

const (
	// flushBytes is how much a file buffers before it is written: large
	// writes keep the syscall count low at hundreds of thousands of rows/s.
	flushBytes = 256 << 10
	// maxPendingBytes caps a file's unwritten bytes while writes fail (disk
	// full); rows beyond it are dropped and counted.
	maxPendingBytes = 8 << 20
	// errorLogInterval is the least time between two logs of write errors.
	errorLogInterval = time.Minute
	// retryInterval is how long a failed open or write waits before the
	// next attempt, so that a full disk does not cost a syscall per row.
	retryInterval = time.Second
)

// Config configures a Writer. Zero values mean the defaults.
type Config struct {
	// Dir is the log directory; it must exist.
	Dir string
	// Tag names the data source in file names (DefaultTag if empty).
	Tag string
	// PacketQueue, ReplyQueue and EventQueue are the capacities of the
	// queues in front of the writer goroutine, in records. Packets and
	// replies handed over by Records count against the same capacities,
	// in up to PacketQueue/BatchRecords/4 batches (each BatchRecords
	// packets and replies, about 17 KiB: 1.1 MiB by default), made as
	// needed; beyond them they queue one by one.
	PacketQueue, ReplyQueue, EventQueue int
	// FlushInterval is the longest time a record stays buffered in memory.
	FlushInterval time.Duration
	// Logger receives the `rotate` lines and write errors (discarded if nil).
	Logger *slog.Logger
	// Compress gzips each hourly file once its hour is closed (rotated
	// out), in the background: NAME becomes NAME.gz. Plain files of
	// finished hours found at start or by the hourly sweep are compressed
	// too. Off if false.
	Compress bool
	// CompressWorkers is how many goroutines deflate a closed file at once
	// (0 is DefaultCompressWorkers). One deflates about 145 MB/s of a
	// flood's records here (BenchmarkGzipFlood: 4.4 µs per SYN with its
	// three records), so it keeps up with about 230k SYN/s averaged over
	// an hour; a telescope whose hours hold more needs more, each up to
	// about 1.5 MiB while a file is being compressed (compressBlockBytes).
	CompressWorkers int
	// Keep removes log files whose hour ended longer ago than Keep, at
	// start and every hour; 0 keeps everything.
	Keep time.Duration
	// OmitSYNEvents leaves out the `syn` event of every SYN (the raw row
	// stays): of the about 560 bytes a SYN costs in the logs the event is
	// about 370, and the dearest of its three records to encode and write
	// (BenchmarkRecordsPerSYN). Off (the events are written) if false.
	OmitSYNEvents bool
	// UDPFields appends the service members of a `udp` event for a
	// payload received on port (spoki run passes udpreply.AppendFields);
	// nil writes udp events without them. It runs on the writer goroutine.
	UDPFields func(dst []byte, port uint16, payload []byte) []byte
	// Root is Dir opened already (os.OpenRoot), or nil for New to open it.
	// `spoki run` opens it before it drops root: every file is then made
	// relative to that handle, so the unprivileged writer needs rights on
	// the directory alone, not on the path to it. The Writer takes Root
	// over and closes it at Close (or when New fails).
	Root *os.Root
}

// Modes of what the Writer creates: the logs say who scanned what, so the
// telescope's user writes them, its group reads them, and nobody else.
const (
	// FileMode is the mode of every log file, plain or gzipped (less the
	// umask).
	FileMode os.FileMode = 0o640
	// DirMode is the mode for a log directory the caller creates.
	DirMode os.FileMode = 0o750
)

// Stats is a snapshot of a Writer's counters. By Close, every record handed
// to the Writer has been written or counted by exactly one Drop counter.
// The tags describe each field for spoki's stats line and metrics (package
// stats).
type Stats struct {
	// PacketsWritten, RepliesWritten and EventsWritten count rows and lines
	// that reached the kernel (SYN events count as events).
	PacketsWritten uint64 `line:"sink_packets_written" metric:"filesink_records_written_total{kind=packet}" help:"Rows and lines that reached the kernel, by kind (packet, reply, event)."`
	RepliesWritten uint64 `line:"sink_replies_written" metric:"filesink_records_written_total{kind=reply}"`
	EventsWritten  uint64 `line:"sink_events_written" metric:"filesink_records_written_total{kind=event}"`
	// BytesWritten counts bytes that reached the kernel, headers included.
	BytesWritten uint64 `line:"bytes_written" metric:"filesink_bytes_written_total" help:"Bytes that reached the kernel, headers included."`
	// DropPacketQueueFull, DropReplyQueueFull and DropEventQueueFull count
	// records refused because their queue was full (the newest is dropped).
	DropPacketQueueFull uint64 `line:"records_dropped" metric:"filesink_records_dropped_total{cause=packet_queue_full}" help:"Records not written, by cause."`
	DropReplyQueueFull  uint64 `line:"records_dropped" metric:"filesink_records_dropped_total{cause=reply_queue_full}"`
	DropEventQueueFull  uint64 `line:"records_dropped" metric:"filesink_records_dropped_total{cause=event_queue_full}"`
	// DropClosed counts records handed in after Close.
	DropClosed uint64 `line:"records_dropped" metric:"filesink_records_dropped_total{cause=closed}"`
	// DropWriteError counts rows lost because their file could not be
	// opened or written (for a packet: its row and its SYN event each).
	DropWriteError uint64 `line:"records_dropped" metric:"filesink_records_dropped_total{cause=write_error}"`
	// DropUnknownProto counts packets of a protocol with no raw log.
	DropUnknownProto uint64 `line:"sink_drop_unknown_proto" metric:"filesink_records_dropped_total{cause=unknown_proto}"`
	// EncodeErrors counts session events whose Detail failed to encode; the
	// line is still written, with detail_error.
	EncodeErrors uint64 `line:"sink_encode_errors" metric:"filesink_encode_errors_total" help:"Session events whose detail failed to encode (written with detail_error)."`
	// WriteErrors counts failed open, write and close calls.
	WriteErrors uint64 `line:"sink_write_errors" metric:"filesink_write_errors_total" help:"Failed open, write and close calls."`
	// PacketQueue, ReplyQueue and EventQueue are the queue depths now.
	PacketQueue int `line:"queue_packets" metric:"filesink_queue_depth{queue=packet}" help:"Records waiting in the writer's queues, by queue."`
	ReplyQueue  int `line:"queue_replies" metric:"filesink_queue_depth{queue=reply}"`
	EventQueue  int `line:"queue_events" metric:"filesink_queue_depth{queue=event}"`
	// FilesOpen is the number of log files open now.
	FilesOpen int64 `line:"files_open" metric:"filesink_files_open" help:"Log files open now."`
	// FilesCompressed counts hourly files replaced by their gzip.
	FilesCompressed uint64 `line:"files_compressed" metric:"filesink_files_compressed_total" help:"Hourly files replaced by their gzip."`
	// CompressErrors counts failed compressions; nothing is lost, the
	// plain file stays and the next sweep tries again.
	CompressErrors uint64 `line:"compress_errors" metric:"filesink_compress_errors_total" help:"Failed compressions (the plain file stays; the next sweep retries)."`
	// CompressQueueFull counts closed files not queued for compression
	// because the queue was full; they stay plain until the next sweep.
	CompressQueueFull uint64 `line:"compress_queue_full" metric:"filesink_compress_queue_full_total" help:"Closed files not queued for compression because the queue was full (compressed by the next sweep)."`
	// FilesRemoved counts files removed because they were older than Keep.
	FilesRemoved uint64 `line:"files_removed" metric:"filesink_files_removed_total" help:"Log files removed because they were older than --keep."`
	// RemoveErrors counts failed removals of expired files.
	RemoveErrors uint64 `line:"remove_errors" metric:"filesink_remove_errors_total" help:"Failed removals of expired log files."`
	// CompressQueue is the number of files waiting for the compressor now.
	CompressQueue int `line:"queue_compress" metric:"filesink_compress_queue_depth" help:"Closed files waiting for the compressor."`
}

// counters are the atomic counters behind Stats.
type counters struct {
	packetsWritten, repliesWritten, eventsWritten, bytesWritten atomic.Uint64
	dropPacketQueueFull, dropReplyQueueFull, dropEventQueueFull atomic.Uint64
	dropClosed, dropWriteError, dropUnknownProto, encodeErrors  atomic.Uint64
	writeErrors                                                 atomic.Uint64
	filesOpen                                                   atomic.Int64
	filesCompressed, compressErrors, compressQueueFull          atomic.Uint64
	filesRemoved, removeErrors                                  atomic.Uint64
}

// eventItem is one entry of the event queue: a session to encode, or a line
// already encoded by the caller.
type eventItem struct {
	t       time.Time
	line    []byte
	session records.Session
	isSess  bool
}

// Writer writes records to hourly files. Its enqueue methods (Packet,
// Reply, Session, Event) never block and may be called from any number of
// goroutines; one goroutine owned by the Writer does all encoding and I/O.
type Writer struct {
	cfg    Config
	logger *slog.Logger
	c      counters

	// mu orders the enqueue methods against Close: once closed is set under
	// the write lock, nothing more enters a queue, so the final drain is
	// complete.
	mu     sync.RWMutex
	closed bool

	packets chan records.Packet
	replies chan records.Reply
	events  chan eventItem
	quit    chan struct{}
	done    chan struct{}

	// batches carries the record batches of Records to the writer, and
	// freeBatches takes them back for reuse. At most maxBatches exist
	// (counted in batchesMade), and batches holds them all, so a send on
	// it never blocks.
	batches, freeBatches chan *recBatch
	maxBatches           int64
	// wakeBatches is the depth of the batch queue at which a hand-off
	// wakes the writer before its next poll: maxBatches/4.
	wakeBatches int64
	batchesMade atomic.Int64
	// queuedPackets and queuedReplies count the packets and replies
	// queued, one by one and in batches together: PacketQueue and
	// ReplyQueue bound both ways at once, so batches add no records to
	// the worst case (a record is counted before it is queued).
	// queuedEvents counts the event queue's the same way.
	queuedPackets, queuedReplies, queuedEvents atomic.Int64

	// idle is set while the writer goroutine sleeps with empty queues:
	// the record that finds it set wakes it through wake. Otherwise the
	// writer takes what queued every writerPoll, and nobody wakes it but
	// a queue past half its bound (wakeAt) or a quarter of the batch
	// queue's (wakeBatches).
	idle atomic.Bool
	wake chan struct{}

	// root is the log directory, opened once; it is replaced only when
	// the directory vanished and another one took its path (reopenRoot).
	root atomic.Pointer[os.Root]

	// files keeps the maintenance goroutine off the files the writer has
	// open; compressQ carries closed files to it.
	files                      fileLocks
	compressQ                  chan string
	maintainQuit, maintainDone chan struct{}
	// sweepEvery is sweepInterval (tests shorten it).
	sweepEvery time.Duration
	// lastMaintainErrLog belongs to the maintenance goroutine.
	lastMaintainErrLog time.Time

	// The fields below belong to the writer goroutine.
	tcpRaw, udpRaw, icmpRaw, replyLog, eventLog *stream
	streams                                     []*stream
	enc                                         []byte   // reused encoding buffer
	udpFields                                   []byte   // reused buffer of a udp event's service fields
	freeBufs                                    [][]byte // file buffers of closed files, reused
	retry                                       time.Duration
	maxPending                                  int // maxPendingBytes (tests lower it)
	droppedAtLog                                uint64
	lastErrLog                                  time.Time
	failing                                     bool
	closeErr                                    error
}

// New checks cfg, creates a Writer and starts its writer goroutine. Call
// Close to stop it.
func New(cfg Config) (*Writer, error) {
	w, err := newWriter(cfg)
	if err != nil {
		return nil, err
	}
	go w.loop()
	w.startMaintenance()
	return w, nil
}

// startMaintenance starts the maintenance goroutine when there is work for
// it (compression or expiry).
func (w *Writer) startMaintenance() {
	if w.cfg.Compress || w.cfg.Keep > 0 {
		w.maintainDone = make(chan struct{})
		go w.maintainLoop()
	}
}

// newWriter builds a Writer without starting its goroutine (tests drive it
// by hand).
func newWriter(cfg Config) (_ *Writer, err error) {
	if cfg.Root != nil {
		defer func() {
			if err != nil {
				cfg.Root.Close()
			}
		}()
	}
	if cfg.Tag == "" {
		cfg.Tag = DefaultTag
	}
	if strings.ContainsAny(cfg.Tag, "/\x00") {
		return nil, fmt.Errorf("filesink: tag %q: contains a path separator", cfg.Tag)
	}
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("filesink: keep %v: negative", cfg.Keep)
	}
	root := cfg.Root
	if root == nil {
		st, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("filesink: log dir: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("filesink: log dir %s: not a directory", cfg.Dir)
		}
		if root, err = os.OpenRoot(cfg.Dir); err != nil {
			return nil, fmt.Errorf("filesink: log dir: %w", err)
		}
	}
	cfg.PacketQueue = orDefault(cfg.PacketQueue, DefaultPacketQueue)
	cfg.ReplyQueue = orDefault(cfg.ReplyQueue, DefaultReplyQueue)
	cfg.EventQueue = orDefault(cfg.EventQueue, DefaultEventQueue)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	cfg.CompressWorkers = orDefault(cfg.CompressWorkers, DefaultCompressWorkers)
	if cfg.CompressWorkers > MaxCompressWorkers {
		return nil, fmt.Errorf("filesink: compress workers %d: at most %d", cfg.CompressWorkers, MaxCompressWorkers)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxBatches := max(1, cfg.PacketQueue/BatchRecords/4)
	w := &Writer{
		cfg:     cfg,
		logger:  logger.With("component", "filesink"),
		packets: make(chan records.Packet, cfg.PacketQueue),
		replies: make(chan records.Reply, cfg.ReplyQueue),
		events:  make(chan eventItem, cfg.EventQueue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		enc:     make([]byte, 0, 4096),
		retry:   retryInterval,
		// maxPending is per file, and all five logs can be pending at once.
		maxPending: maxPendingBytes,

		batches:     make(chan *recBatch, maxBatches),
		freeBatches: make(chan *recBatch, maxBatches),
		maxBatches:  int64(maxBatches),
		wakeBatches: int64(max(1, maxBatches/4)),

		files:        fileLocks{open: map[string]int{}},
		compressQ:    make(chan string, compressQueue),
		maintainQuit: make(chan struct{}),
		sweepEvery:   sweepInterval,
	}
	w.cfg.Root = nil // the Writer's own from here: w.root
	w.root.Store(root)
	w.initStreams()
	return w, nil
}

// initStreams sets up the five logs and their file names.
func (w *Writer) initStreams() {
	tag := w.cfg.Tag
	w.tcpRaw = w.newCSVStream("tcp", "raw", records.RawHeader, &w.c.packetsWritten)
	w.udpRaw = w.newCSVStream("udp", "raw", records.UDPRawHeader, &w.c.packetsWritten)
	w.icmpRaw = w.newCSVStream("icmp", "raw", records.ICMPRawHeader, &w.c.packetsWritten)
	w.replyLog = w.newCSVStream("tcp", "scamper", records.ReplyHeader, &w.c.repliesWritten)
	w.eventLog = &stream{log: "events", written: &w.c.eventsWritten, name: func(hour int64) string {
		return tag + ".events." + time.Unix(hour, 0).UTC().Format("20060102-15") + ".jsonl"
	}}
	w.streams = []*stream{w.tcpRaw, w.udpRaw, w.icmpRaw, w.replyLog, w.eventLog}
}

// reopenRoot opens Dir again by its path after a file could not be
// created because the directory was removed (an operator cleaning up):
// writing resumes once a directory is back at that path and reachable. It
// reports whether a new handle replaced the old one.
func (w *Writer) reopenRoot() bool {
	r, err := os.OpenRoot(w.cfg.Dir)
	if err != nil {
		return false
	}
	if old := w.root.Swap(r); old != nil {
		// The maintenance goroutine may hold old: its call fails, and the
		// next sweep runs on the new handle.
		old.Close()
	}
	return true
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// newCSVStream returns the stream of one Spoki CSV log, named as Spoki names
// it but in UTC (docs/formats.md#file-names-and-hours):
// YYYY-MM-DD.HH:00:00.TAG.spoki.PROTO.COMPONENT.EPOCH.csv.
func (w *Writer) newCSVStream(proto, component, header string, written *atomic.Uint64) *stream {
	tag := w.cfg.Tag
	return &stream{log: proto + "." + component, header: header, written: written, name: func(hour int64) string {
		return fmt.Sprintf("%s.%s.spoki.%s.%s.%d.csv",
			time.Unix(hour, 0).UTC().Format("2006-01-02.15:04:05"), tag, proto, component, hour)
	}}
}

// Packet queues a copy of p for the raw log of its protocol and, for a SYN
// (p.IsSYN), a `syn` event (unless Config.OmitSYNEvents). It never blocks:
// when the queue is full the packet is dropped and counted. p.Payload is kept, not copied: the caller
// must not modify it afterwards.
func (w *Writer) Packet(p *records.Packet) {
	enqueue(w, w.packets, *p, &w.queuedPackets, &w.c.dropPacketQueueFull)
}

// Reply queues a copy of r for the reply log. It never blocks: when the
// queue is full the reply is dropped and counted.
func (w *Writer) Reply(r *records.Reply) {
	enqueue(w, w.replies, *r, &w.queuedReplies, &w.c.dropReplyQueueFull)
}

// Session queues a copy of s for a `session` event, filed under the hour of
// s.Flow.Accepted. It never blocks: when the event queue is full the session
// is dropped and counted. s.Payload and s.Detail are kept, not copied: the
// caller must not modify them afterwards.
func (w *Writer) Session(s *records.Session) {
	w.enqueueEvent(eventItem{t: s.Flow.Accepted, session: *s, isSess: true})
}

// Event queues one pre-encoded event line (see records.AppendEvent), filed
// under the hour of t, which should be the event's timestamp. A missing final
// newline is added. The Writer takes line over: the caller must not modify it
// afterwards. It never blocks: when the queue is full the line is dropped and
// counted.
func (w *Writer) Event(t time.Time, line []byte) {
	w.enqueueEvent(eventItem{t: t, line: line})
}

// BatchRecords is the most packets, and the most replies, one entry of
// the batch queue holds: a TUN read's worth (tun.MaxBatch). Records splits
// a longer call.
const BatchRecords = 64

// recBatch is one entry of the batch queue: copies of the records of one
// Records call.
type recBatch struct {
	pkts []records.Packet // cap BatchRecords
	reps []records.Reply  // cap BatchRecords
}

// Records queues copies of the packets (as Packet does each) and of the
// replies (as Reply) in one entry per BatchRecords of each: the packet
// path's way to hand over what one read of the TUN produced with one
// queue operation instead of one per record. The batch queue holds at most
// PacketQueue/BatchRecords/4 entries (at least one), each made when first
// needed and reused; when none is free (the writer is behind by that many
// reads) the records are queued one by one instead. Either way they count
// against PacketQueue and ReplyQueue with those of Packet and Reply: when
// that budget is spent they are dropped and counted as Packet and Reply
// count them. It never blocks. Payloads are
// kept, not copied, as by Packet.
func (w *Writer) Records(pkts []records.Packet, reps []records.Reply) {
	for len(pkts) > 0 || len(reps) > 0 {
		np, nr := min(len(pkts), BatchRecords), min(len(reps), BatchRecords)
		w.enqueueBatch(pkts[:np], reps[:nr])
		pkts, reps = pkts[np:], reps[nr:]
	}
}

func (w *Writer) enqueueBatch(pkts []records.Packet, reps []records.Reply) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.c.dropClosed.Add(uint64(len(pkts) + len(reps)))
		return
	}
	np, nr := int64(len(pkts)), int64(len(reps))
	qp, qr := w.queuedPackets.Add(np), w.queuedReplies.Add(nr)
	if qp > int64(cap(w.packets)) || qr > int64(cap(w.replies)) {
		w.queuedPackets.Add(-np)
		w.queuedReplies.Add(-nr)
		w.c.dropPacketQueueFull.Add(uint64(np))
		w.c.dropReplyQueueFull.Add(uint64(nr))
		return
	}
	b := w.getBatch()
	if b == nil {
		// Every batch is queued: one by one, within the budget counted
		// above, which is the channels' capacity, so they have room.
		for i := range pkts {
			sendCounted(w.packets, pkts[i], &w.queuedPackets, &w.c.dropPacketQueueFull)
		}
		for i := range reps {
			sendCounted(w.replies, reps[i], &w.queuedReplies, &w.c.dropReplyQueueFull)
		}
		w.notify(true)
		return
	}
	b.pkts = append(b.pkts[:0], pkts...)
	b.reps = append(b.reps[:0], reps...)
	w.batches <- b // never blocks: it holds every batch there is
	// Many small reads fill the batch queue before the next poll: a
	// quarter of it wakes the writer, so that few batches are made and
	// none runs out (its records would go one by one).
	w.notify(qp > wakeAt(cap(w.packets)) || qr > wakeAt(cap(w.replies)) ||
		int64(len(w.batches)) >= w.wakeBatches)
}

// Backlogged reports whether the writer is behind: more than three
// quarters of PacketQueue or ReplyQueue are queued, so that the next reads'
// rows may not fit (netstack.Backlogger). Two atomic loads.
func (w *Writer) Backlogged() bool {
	return w.queuedPackets.Load() > backlogAt(cap(w.packets)) || w.queuedReplies.Load() > backlogAt(cap(w.replies))
}

// sendCounted sends v, already counted in queued, on ch. It never blocks:
// should ch be full after all, v is uncounted, dropped and counted in full.
func sendCounted[T any](ch chan<- T, v T, queued *atomic.Int64, full *atomic.Uint64) {
	select {
	case ch <- v:
	default:
		queued.Add(-1)
		full.Add(1)
	}
}

// getBatch returns a free batch, a new one while fewer than maxBatches
// exist, or nil.
func (w *Writer) getBatch() *recBatch {
	select {
	case b := <-w.freeBatches:
		return b
	default:
	}
	if w.batchesMade.Add(1) > w.maxBatches {
		w.batchesMade.Add(-1)
		return nil
	}
	return &recBatch{pkts: make([]records.Packet, 0, BatchRecords), reps: make([]records.Reply, 0, BatchRecords)}
}

// writeBatch writes b's records and frees b.
func (w *Writer) writeBatch(b *recBatch) int {
	for i := range b.pkts {
		w.writePacket(&b.pkts[i])
		// A payload stays referenced by a free batch until overwritten:
		// let it go now.
		b.pkts[i].Payload = nil
	}
	for i := range b.reps {
		w.writeReply(&b.reps[i])
	}
	n := len(b.pkts) + len(b.reps)
	w.queuedPackets.Add(-int64(len(b.pkts)))
	w.queuedReplies.Add(-int64(len(b.reps)))
	b.pkts, b.reps = b.pkts[:0], b.reps[:0]
	w.freeBatches <- b // never blocks: it holds every batch there is
	return n
}

func (w *Writer) enqueueEvent(e eventItem) {
	enqueue(w, w.events, e, &w.queuedEvents, &w.c.dropEventQueueFull)
}

// writerPoll is how long the writer goroutine sleeps between two drains
// of its queues while records keep coming (a drain found pollMin or
// more): under a flood it costs one timer wake-up per writerPoll (some
// 500 SYNs at 100,000 SYN/s) and the packet path none, where a hand-off
// to a parked writer cost the packet path a futex wake and both a
// context switch. After a drain of fewer it sleeps writerPollFew, and
// after one that found nothing it sleeps idle until the next record
// wakes it. So a record waits for the writer at most writerPoll plus the
// writing of what is queued before it, and under low load at most
// writerPollFew (BenchmarkWriterLatency).
const writerPoll = 5 * time.Millisecond

// writerPollFew is the writer's sleep after a drain of fewer than
// pollMin records: as long as the old coalescing pause, so that a trickle
// of small reads costs no more wake-ups than it did.
const writerPollFew = time.Millisecond

// pollMin is the fewest records a drain must find for the writer to
// sleep writerPoll: a read's worth (BatchRecords), some 13,000 records a
// second.
const pollMin = BatchRecords

// wakeAt is the depth of a queue of capacity c beyond which a hand-off
// wakes the writer before its next poll: a burst fills no queue while it
// sleeps. (The batch queue has its own: wakeBatches.)
func wakeAt(c int) int64 { return int64(c / 2) }

// backlogAt is the depth of a queue of capacity c past which the writer
// is Backlogged: three quarters, above wakeAt, so that the readers wait
// only once waking the writer early has not kept it up.
func backlogAt(c int) int64 { return int64(c / 4 * 3) }

// notify wakes the writer goroutine after a record was queued, if it
// sleeps idle or urgent is set. It never blocks.
func (w *Writer) notify(urgent bool) {
	if urgent || w.idle.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// queued reports whether a record was counted in (or is on its way into)
// a queue and not yet taken.
func (w *Writer) queued() bool {
	return w.queuedPackets.Load()+w.queuedReplies.Load()+w.queuedEvents.Load() > 0
}

// enqueue queues v on ch, one of w's queues. It never blocks: when w is
// closed the record is counted in dropClosed, when ch is full in full. v is
// taken by value: escape analysis does not see through a generic call with
// its dictionary, so a pointer here moved the caller's record to the heap,
// two allocations per SYN (telescope's TestSinkAdapterAllocatesNothing).
//
// queued counts ch's records (for packets and replies a budget ch has
// with the batch queue: queuedPackets, queuedReplies): the record is
// counted there before it is queued, and refused when the budget, ch's
// capacity, is spent. The count is also what tells the writer, before it
// sleeps idle, that a record is on its way (notify).
func enqueue[T any](w *Writer, ch chan<- T, v T, queued *atomic.Int64, full *atomic.Uint64) {
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		w.c.dropClosed.Add(1)
		return
	}
	q := queued.Add(1)
	if q > int64(cap(ch)) {
		queued.Add(-1)
		full.Add(1)
		w.mu.RUnlock()
		return
	}
	sendCounted(ch, v, queued, full)
	w.mu.RUnlock()
	w.notify(q > wakeAt(cap(ch)))
}

// Close stops taking records, writes everything queued, flushes and closes
// every file. Records handed in afterwards are counted in DropClosed. The
// error joins every failure to write or close a file (the rows lost are in
// DropWriteError). Close is safe to call more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.closeErr
	}
	w.closed = true
	w.mu.Unlock()
	close(w.quit)
	<-w.done
	// After the writer: a compression under way is abandoned (its plain
	// file stays for the next start) rather than holding up the exit.
	close(w.maintainQuit)
	if w.maintainDone != nil {
		<-w.maintainDone
	}
	w.root.Load().Close()
	return w.closeErr
}

// Stats returns a snapshot of the counters and queue depths.
func (w *Writer) Stats() Stats {
	return Stats{
		PacketsWritten:      w.c.packetsWritten.Load(),
		RepliesWritten:      w.c.repliesWritten.Load(),
		EventsWritten:       w.c.eventsWritten.Load(),
		BytesWritten:        w.c.bytesWritten.Load(),
		DropPacketQueueFull: w.c.dropPacketQueueFull.Load(),
		DropReplyQueueFull:  w.c.dropReplyQueueFull.Load(),
		DropEventQueueFull:  w.c.dropEventQueueFull.Load(),
		DropClosed:          w.c.dropClosed.Load(),
		DropWriteError:      w.c.dropWriteError.Load(),
		DropUnknownProto:    w.c.dropUnknownProto.Load(),
		EncodeErrors:        w.c.encodeErrors.Load(),
		WriteErrors:         w.c.writeErrors.Load(),
		PacketQueue:         int(w.queuedPackets.Load()),
		ReplyQueue:          int(w.queuedReplies.Load()),
		EventQueue:          int(w.queuedEvents.Load()),
		FilesOpen:           w.c.filesOpen.Load(),
		FilesCompressed:     w.c.filesCompressed.Load(),
		CompressErrors:      w.c.compressErrors.Load(),
		CompressQueueFull:   w.c.compressQueueFull.Load(),
		FilesRemoved:        w.c.filesRemoved.Load(),
		RemoveErrors:        w.c.removeErrors.Load(),
		CompressQueue:       len(w.compressQ),
	}
}

// loop is the writer goroutine: it drains the queues (every writerPoll
// while records keep coming, at once when one comes to an idle writer),
// flushes the files every FlushInterval, and on Close drains what is left
// and closes the files.
func (w *Writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	poll := time.NewTimer(writerPoll)
	poll.Stop()
	defer poll.Stop()
	for {
		var pollC <-chan time.Time
		switch n := w.drainSome(); {
		case n >= drainMax:
			// Still behind: serve the tick and Close, and go on.
			pollC = closedTime
		case n >= pollMin:
			// Records keep coming: take them after writerPoll.
			poll.Reset(writerPoll)
			pollC = poll.C
		case n > 0:
			// A few: more may follow.
			poll.Reset(writerPollFew)
			pollC = poll.C
		default:
			w.idle.Store(true)
			if w.queued() {
				// A record came before idle was set and woke no one
				// (or is being queued): take it at the next poll.
				w.idle.Store(false)
				poll.Reset(writerPoll)
				pollC = poll.C
			}
		}
		select {
		case <-pollC:
		case <-w.wake:
		case <-tick.C:
			w.flushAll()
		case <-w.quit:
			w.idle.Store(false)
			w.drain()
			w.closeErr = w.closeAll()
			return
		}
		if w.idle.Load() {
			w.idle.Store(false)
		}
	}
}

// closedTime is a channel always ready to receive from.
var closedTime = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// drain writes whatever is left in the queues. It runs after closed is set,
// so the queues only shrink.
func (w *Writer) drain() {
	for w.drainSome() > 0 {
	}
}

// drainMax bounds the records of one drainSome, so that the flush tick
// and Close are served even under a flood that fills the queues as fast
// as they drain.
const drainMax = 1 << 14

// drainSome writes what the queues hold, in rounds of one entry from each
// queue, until they are empty or drainMax records are written, and
// returns the number of records written.
func (w *Writer) drainSome() int {
	n := 0
	for n < drainMax {
		got := n
		select {
		case b := <-w.batches:
			n += w.writeBatch(b)
		default:
		}
		select {
		case p := <-w.packets:
			w.queuedPackets.Add(-1)
			w.writePacket(&p)
			n++
		default:
		}
		select {
		case r := <-w.replies:
			w.queuedReplies.Add(-1)
			w.writeReply(&r)
			n++
		default:
		}
		select {
		case e := <-w.events:
			w.queuedEvents.Add(-1)
			w.writeEvent(&e)
			n++
		default:
		}
		if n == got {
			break
		}
	}
	return n
}

// writePacket writes p's raw row and, for a SYN, its `syn` event (unless
// Config.OmitSYNEvents).
func (w *Writer) writePacket(p *records.Packet) {
	var s *stream
	switch p.Proto {
	case records.ProtoTCP:
		s = w.tcpRaw
	case records.ProtoUDP:
		s = w.udpRaw
	case records.ProtoICMP:
		s = w.icmpRaw
	default:
		w.c.dropUnknownProto.Add(1)
		return
	}
	hour := hourOf(p.Time)
	w.writeRaw(s, hour, p)
	switch {
	case p.IsSYN():
		w.writeSYNEvent(hour, p)
	case p.Proto == records.ProtoICMP || p.Proto == records.ProtoUDP:
		w.writeIPEvent(hour, p)
	}
}

// writeIPEvent writes the `icmp` or `udp` event of p; a udp event carries
// what the service's parser read of the payload (udpreply.AppendFields).
func (w *Writer) writeIPEvent(hour int64, p *records.Packet) {
	f := w.eventLog.fileFor(w, hour)
	if f == nil {
		w.c.dropWriteError.Add(1)
		return
	}
	n := len(f.buf)
	if p.Proto == records.ProtoICMP {
		f.buf = records.AppendICMPEvent(f.buf, p)
	} else {
		var fields []byte
		if !p.Fragment && w.cfg.UDPFields != nil {
			w.udpFields = w.cfg.UDPFields(w.udpFields[:0], p.DstPort, p.Payload)
			fields = w.udpFields
		}
		f.buf = records.AppendUDPEvent(f.buf, p, fields)
	}
	f.commit(w, n)
}

// writeRaw, writeSYNEvent and writeReply encode their row straight into
// the file's buffer, without a copy through w.enc: a SYN's three rows are
// the writer's bulk, and each copy was a memmove of the row.

// writeRaw writes p's raw row to s.
func (w *Writer) writeRaw(s *stream, hour int64, p *records.Packet) {
	f := s.fileFor(w, hour)
	if f == nil {
		w.c.dropWriteError.Add(1)
		return
	}
	n := len(f.buf)
	f.buf = records.AppendRawRow(f.buf, p)
	f.commit(w, n)
}

// writeSYNEvent writes the `syn` event of p, unless Config.OmitSYNEvents.
func (w *Writer) writeSYNEvent(hour int64, p *records.Packet) {
	if w.cfg.OmitSYNEvents {
		return
	}
	f := w.eventLog.fileFor(w, hour)
	if f == nil {
		w.c.dropWriteError.Add(1)
		return
	}
	n := len(f.buf)
	f.buf = records.AppendSYNEvent(f.buf, p)
	f.commit(w, n)
}

func (w *Writer) writeReply(r *records.Reply) {
	f := w.replyLog.fileFor(w, hourOf(r.Time))
	if f == nil {
		w.c.dropWriteError.Add(1)
		return
	}
	n := len(f.buf)
	f.buf = records.AppendReplyRow(f.buf, r)
	f.commit(w, n)
}

func (w *Writer) writeEvent(e *eventItem) {
	if e.isSess {
		var err error
		w.enc, err = records.AppendSessionEvent(w.enc[:0], &e.session)
		if err != nil {
			w.c.encodeErrors.Add(1)
		}
	} else {
		w.enc = append(w.enc[:0], e.line...)
		if len(w.enc) == 0 || w.enc[len(w.enc)-1] != '\n' {
			w.enc = append(w.enc, '\n')
		}
	}
	w.eventLog.write(w, hourOf(e.t), w.enc)
}

// flushAll writes every file's buffer and closes the files reopened for
// older hours: late records come in bursts, so one tick keeps them open long
// enough.
func (w *Writer) flushAll() {
	now := time.Now()
	for _, s := range w.streams {
		for _, f := range []*hourFile{s.cur, s.prev} {
			if f != nil && !now.Before(f.retryAt) {
				f.flush(w)
			}
		}
		if s.old != nil {
			w.closeFile(s, s.old, "close")
			s.old = nil
		}
	}
}

// closeAll flushes and closes every file.
func (w *Writer) closeAll() error {
	var errs []error
	for _, s := range w.streams {
		for _, f := range []*hourFile{s.old, s.prev, s.cur} {
			if f != nil {
				errs = append(errs, w.closeFile(s, f, "final"))
			}
		}
		s.cur, s.prev, s.old = nil, nil, nil
	}
	return errors.Join(errs...)
}

// writeError counts a failed file operation and logs it at most once per
// errorLogInterval: a full disk fails every write, and the counters carry
// the numbers. Each line says how many rows were lost in all and since the
// line before, and whether the disk (or quota) is full.
func (w *Writer) writeError(op, path string, err error) {
	w.c.writeErrors.Add(1)
	w.failing = true
	if now := time.Now(); now.Sub(w.lastErrLog) >= errorLogInterval {
		w.lastErrLog = now
		dropped := w.c.dropWriteError.Load()
		w.logger.Error("write failed", "op", op, "file", path, "err", err,
			"disk_full", errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT),
			"write_errors", w.c.writeErrors.Load(), "dropped", dropped,
			"dropped_since_last", dropped-w.droppedAtLog)
		w.droppedAtLog = dropped
	}
}

// writeOK notes a successful write, logging once when writing resumes after
// errors.
func (w *Writer) writeOK(path string) {
	if w.failing {
		w.failing = false
		w.logger.Info("write resumed", "file", path,
			"write_errors", w.c.writeErrors.Load(), "dropped", w.c.dropWriteError.Load())
	}
}

// hourOf returns the start of t's hour in Unix seconds (files go by UTC
// hour; whole hours are the same in every zone that matters here).
func hourOf(t time.Time) int64 {
	sec := t.Unix()
	h := sec / 3600
	if sec%3600 < 0 {
		h--
	}
	return h * 3600
}
