package assemble

// Stage B (see doc.go): the round loop of the original's
// EventMatcher.match, which feeds the confirmed events to the phase
// matcher and runs one checkpoint per round.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"
)

// Config holds the settings of a run. Zero values mean the original's
// defaults where it has one.
type Config struct {
	// Dir is the log directory with the raw and scamper files.
	Dir string
	// Tag is the datasource tag in the file names (required).
	Tag string
	// Start is the first hour (batch 0); it is truncated to the hour.
	Start time.Time
	// PhaseTimeout is P of the phase window [tc-1, tc+P) (default 600 s).
	PhaseTimeout time.Duration
	// ProbeTimeout is the largest distance between a packet and its probe
	// confirmation (default 5 min).
	ProbeTimeout time.Duration
	// FlushAtEOF writes, at the end of the input, the batches that the
	// original never writes.
	FlushAtEOF bool
	// Follow tails a live directory: missing files are waited for, and
	// Run returns only when ctx is done.
	Follow bool
	// Poll is how often a followed directory is polled (default 5 s, the
	// original's sleep).
	Poll time.Duration
	// Now is the wall clock of the live reader (default time.Now). Offline
	// runs ignore it: every hour counts as long past.
	Now func() time.Time
	// Logger receives one Info line per written batch and the end of the
	// run (default: discard).
	Logger *slog.Logger
	// OnRound, if set, is called after stage A of every round. It is a
	// diagnostics hook; the tests check the original's figures with it.
	OnRound func(RoundStats)
	// OnCheckpoint, if set, is called after every checkpoint.
	OnCheckpoint func(CheckpointStats)
	// OnProgress, if set, is called on Run's goroutine after each file is
	// opened, every ProgressRows rows and once at the end (Done). It must
	// return quickly; a display throttles it by the clock.
	OnProgress func(Progress)
}

// confirmationLoadThreshold: a log is not read further while it is this far
// ahead of the other.
const confirmationLoadThreshold = 30 * time.Minute

// RoundStats describes stage A of one round.
type RoundStats struct {
	// Round counts from 0.
	Round int
	// Unprobed and Confirmed are the events emitted this round (Emitted is
	// their sum); Kept are the probed events still waiting.
	Emitted, Unprobed, Confirmed, Kept int
}

// CheckpointStats describes one checkpoint.
type CheckpointStats struct {
	// Batch is the batch that was evicted.
	Batch int
	// Records is how many records were written (0: b did not advance).
	Records int
	// Repeated is how many acked regular SYNs were dropped as repeated
	// connections.
	Repeated int
	// Final is set for the checkpoints of the flush at the end.
	Final bool
}

// Stats counts what a run read, matched and dropped. The engine runs on one
// goroutine, so the counters are plain integers: read them after Run.
type Stats struct {
	// Rows and Confirmations count the data rows read.
	Rows, Confirmations uint64
	// RowsMissingColumn counts rows skipped for a missing column (the
	// original skips them too); RowsBadValue rows skipped for a value that
	// does not parse (the original dies on them).
	RowsMissingColumn, RowsBadValue uint64
	// Unprobed and Confirmed count the events passed to stage B.
	Unprobed, Confirmed uint64
	// UnconfirmedDropped counts probed events dropped without a
	// confirmation when their batch was evicted; ConfirmationsEvicted the
	// confirmations dropped unused.
	UnconfirmedDropped, ConfirmationsEvicted uint64
	// NonTCP, RSTIgnored, Retransmits and Ignored count the packets stage C
	// drops: UDP/ICMP rows, RSTs, retransmits, and SYN-ACKs or packets
	// with neither SYN nor ACK.
	NonTCP, RSTIgnored, Retransmits, Ignored uint64
	// AcksDiscarded counts unmatched ACKs evicted (never written);
	// RepeatedDropped acked regular SYNs dropped as repeated connections.
	AcksDiscarded, RepeatedDropped uint64
	// Records and Batches count what was written.
	Records, Batches uint64
	// Unflushed counts the events that were read but never reached an
	// output batch because the input ended first (without FlushAtEOF).
	Unflushed uint64
	// UnflushedRecords counts the records that FlushAtEOF would have
	// written on top of Records (without FlushAtEOF): the run goes on to
	// the flush without writing it, then restores every other counter. It
	// is a lower bound when input after where the original stops could
	// not be read (the WARN line says so; the run still succeeds, as the
	// original's output is complete).
	UnflushedRecords uint64
}

// Sink receives each batch of records, sorted as the original writes them.
// The slice and the records are reused after WriteBatch returns.
type Sink interface {
	WriteBatch(batch int, recs []Record) error
}

// engine is one run.
type engine struct {
	cfg     Config
	stats   *Stats
	cm      *confirmationMatcher
	pm      *phaseMatcher
	raw     *hourReader
	con     *hourReader
	sink    Sink
	strs    interner
	rawP    *rawParser
	conP    *conParser
	slab    []event
	cslab   []confirmation
	newEvs  []*event
	newCons []*confirmation
	pending []*event
	// next is the checkpoint time T (unix seconds) and b the batch to
	// evict at it.
	next     int64
	b        int32
	maxBatch int32
	out      []Record
	round    int
	// dry is set where the original stops (without FlushAtEOF): the run
	// goes on as FlushAtEOF would, writing nothing, to count the records
	// left out (dryRecords); saved holds the counters of the real run.
	dry        bool
	dryRecords uint64
	saved      Stats
	nextBatch  int // e.b where the original stopped
	// prog is the progress snapshot; bytesRead the readers' byte count,
	// rawBatch the batch of the last raw row.
	start     time.Time
	prog      Progress
	bytesRead int64
	rawBatch  int32
}

// Run assembles the logs of cfg.Dir and writes the batches into sink. It
// returns when the input is exhausted (or, with cfg.Follow, when ctx is
// done); stats, if not nil, receives the counters.
func Run(ctx context.Context, cfg Config, sink Sink, stats *Stats) error {
	if cfg.Tag == "" {
		return errors.New("assemble: no tag")
	}
	if cfg.PhaseTimeout == 0 {
		cfg.PhaseTimeout = 600 * time.Second
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = 5 * time.Minute
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if !cfg.Follow {
		far := time.Unix(math.MaxInt32*4, 0)
		now = func() time.Time { return far }
	}
	if stats == nil {
		stats = new(Stats)
	}
	start := cfg.Start.UTC().Truncate(time.Hour)
	e := &engine{
		cfg:   cfg,
		stats: stats,
		cm:    newConfirmationMatcher(cfg.ProbeTimeout.Microseconds(), stats),
		pm:    newPhaseMatcher(cfg.PhaseTimeout.Microseconds(), stats),
		sink:  sink,
		strs:  make(interner),
		next:  start.Add(90 * time.Minute).Unix(),
	}
	mk := func(logType string) *hourReader {
		return &hourReader{dir: cfg.Dir, tag: cfg.Tag, logType: logType, next: start,
			follow: cfg.Follow, poll: cfg.Poll, now: now, bufSize: 1 << 20}
	}
	e.raw, e.con = mk("raw"), mk("scamper")
	e.start = start
	if cfg.OnProgress != nil {
		for _, r := range []*hourReader{e.raw, e.con} {
			r.read = &e.bytesRead
			r.opened = func() { e.prog.FilesOpened++; e.progress(false) }
		}
	}
	e.raw.header = func(h []byte) { e.rawP = newRawParser(h, e.strs) }
	e.raw.line = e.addRow
	e.con.header = func(h []byte) { e.conP = newConParser(h, e.strs) }
	e.con.line = e.addConfirmation
	defer e.raw.closeAll()
	defer e.con.closeAll()
	if !cfg.Follow {
		if err := e.raw.scanLast(); err != nil {
			return err
		}
		if err := e.con.scanLast(); err != nil {
			return err
		}
		e.prog.FilesTotal = e.raw.totalFiles + e.con.totalFiles
		e.prog.BytesTotal = e.raw.totalBytes + e.con.totalBytes
	} else if fi, err := os.Stat(cfg.Dir); err != nil {
		return fmt.Errorf("assemble: log dir: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("assemble: log dir %s: not a directory", cfg.Dir)
	}
	err := e.run(ctx)
	e.progress(true)
	return err
}

// progress calls OnProgress with the current figures.
func (e *engine) progress(done bool) {
	if e.cfg.OnProgress == nil {
		return
	}
	e.prog.Done = done
	e.prog.BytesRead = e.bytesRead
	e.prog.Hour = e.start.Add(time.Duration(e.rawBatch) * time.Hour)
	e.prog.Records = e.stats.Records
	e.cfg.OnProgress(e.prog)
}

// slabSize is how many events are allocated at once: one allocation per
// slab instead of per row. A slab lives while any of its events does.
const slabSize = 256

func (e *engine) addRow(line []byte, batch int32) {
	e.stats.Rows++
	e.rawBatch = batch
	if e.prog.Rows++; e.prog.Rows%ProgressRows == 0 {
		e.progress(false)
	}
	if len(e.slab) == cap(e.slab) {
		e.slab = make([]event, 0, slabSize)
	}
	e.slab = e.slab[:len(e.slab)+1]
	ev := &e.slab[len(e.slab)-1]
	if err := e.rawP.parse(line, ev); err != nil {
		e.countBad(err)
		e.slab = e.slab[:len(e.slab)-1]
		return
	}
	ev.batch = batch
	e.maxBatch = max(e.maxBatch, batch)
	e.newEvs = append(e.newEvs, ev)
}

func (e *engine) addConfirmation(line []byte, batch int32) {
	e.stats.Confirmations++
	if e.prog.Rows++; e.prog.Rows%ProgressRows == 0 {
		e.progress(false)
	}
	if len(e.cslab) == cap(e.cslab) {
		e.cslab = make([]confirmation, 0, slabSize)
	}
	e.cslab = e.cslab[:len(e.cslab)+1]
	c := &e.cslab[len(e.cslab)-1]
	if err := e.conP.parse(line, c); err != nil {
		e.countBad(err)
		e.cslab = e.cslab[:len(e.cslab)-1]
		return
	}
	c.batch = batch
	e.newCons = append(e.newCons, c)
}

func (e *engine) countBad(err error) {
	if errors.Is(err, errMissingColumn) {
		e.stats.RowsMissingColumn++
	} else {
		e.stats.RowsBadValue++
	}
}

// load runs one reader's next_batch and hands the rows to stage A.
func (e *engine) load(ctx context.Context, r *hourReader) error {
	_, err := r.nextBatch(ctx)
	if r == e.con {
		e.cm.addConfirmations(e.newCons)
		clear(e.newCons)
		e.newCons = e.newCons[:0]
	} else {
		e.cm.addEvents(e.newEvs)
		clear(e.newEvs)
		e.newEvs = e.newEvs[:0]
	}
	return err
}

func (e *engine) run(ctx context.Context) error {
	thr := confirmationLoadThreshold.Microseconds()
	for {
		cm := e.cm
		// A missing time counts as "load" (the original would crash on
		// it, but cannot get there: its reader blocks until it has rows).
		loadCon := !cm.haveCts || !cm.haveEts || cm.cts-cm.ets < thr
		loadEv := !cm.haveEts || !cm.haveCts || cm.ets-cm.cts < thr
		ended := 0
		for _, l := range []struct {
			do bool
			r  *hourReader
		}{{loadCon, e.con}, {loadEv, e.raw}} {
			if !l.do {
				continue
			}
			err := e.load(ctx, l.r)
			switch {
			case errors.Is(err, errEnd):
				if !e.cfg.FlushAtEOF && !e.dry {
					// The original blocks here forever: what it wrote is
					// final, the rest is only counted.
					e.beginDry()
				}
				ended++
			case err != nil && ctx.Err() != nil:
				return e.finish(e.cfg.FlushAtEOF || e.dry)
			case err != nil && e.dry:
				// Past the original's end: its output is complete, and
				// it never reads this far. Only the count is cut short.
				return e.endDry(err)
			case err != nil:
				return err
			}
		}
		if (e.cfg.FlushAtEOF || e.dry) && ended > 0 && ended == btoi(loadCon)+btoi(loadEv) {
			return e.finish(true)
		}
		if err := e.stageB(); err != nil {
			return err
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stageB matches the loaded rows to their confirmations and feeds the
// emitted events to the phase matcher until the first checkpoint.
func (e *engine) stageB() error {
	before := len(e.pending)
	e.pending = e.cm.match(e.pending)
	if e.cfg.OnRound != nil && !e.dry {
		rs := RoundStats{Round: e.round, Emitted: len(e.pending) - before, Kept: len(e.cm.ecache)}
		for _, ev := range e.pending[before:] {
			if ev.probed {
				rs.Confirmed++
			} else {
				rs.Unprobed++
			}
		}
		e.cfg.OnRound(rs)
	}
	e.round++
	i := 0
	var err error
	for i < len(e.pending) {
		ev := e.pending[i]
		i++
		e.pm.addEvent(ev)
		if ev.ts >= e.next {
			// At most one checkpoint per round: the rest waits for the
			// next round.
			_, err = e.checkpoint(false)
			break
		}
	}
	n := copy(e.pending, e.pending[i:])
	clear(e.pending[n:])
	e.pending = e.pending[:n]
	return err
}

// checkpoint runs checkpoint(b). Without records b does not advance (the
// original stalls there) unless final is set.
func (e *engine) checkpoint(final bool) (int, error) {
	pm := e.pm
	pm.tryMatchEverything()
	rep := pm.findRepeatedConnections()
	pm.evictRetransmits(e.b)
	e.out = pm.evict(e.b, e.out[:0])
	n := len(e.out)
	if e.cfg.OnCheckpoint != nil && !e.dry {
		e.cfg.OnCheckpoint(CheckpointStats{Batch: int(e.b), Records: n, Repeated: rep, Final: final})
	}
	if n > 0 && e.dry {
		e.dryRecords += uint64(n)
	} else if n > 0 {
		if err := e.sink.WriteBatch(int(e.b), e.out); err != nil {
			return n, err
		}
		e.stats.Records += uint64(n)
		e.stats.Batches++
		e.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "batch",
			slog.Int("batch", int(e.b)), slog.Int("records", n), slog.Int64("ts", e.out[0].ts))
	}
	clear(e.out)
	if n > 0 || final {
		e.next += 3600
		e.b++
	}
	return n, nil
}

// beginDry marks where the original's output ends: the counters so far are
// the run's, and whatever follows only counts the records left out.
func (e *engine) beginDry() {
	e.stats.Unflushed = uint64(len(e.pending)) + uint64(e.pm.isyns.len()+e.pm.rsyns.len()+
		e.pm.iacked.len()+e.pm.racked.len()+e.pm.tpna.len()+e.pm.tp.len())
	e.saved = *e.stats
	e.dryRecords = 0
	e.dry = true
	e.nextBatch = int(e.b)
}

// finish ends the run. The events still pending go through the phase
// matcher (with their checkpoints, one at a time as in the rounds), then
// every batch up to the last one read is checkpointed: written with flush,
// only counted without (the original never gets there).
func (e *engine) finish(flush bool) error {
	if !flush && !e.dry {
		e.beginDry()
	}
	for _, ev := range e.pending {
		e.pm.addEvent(ev)
		if ev.ts >= e.next {
			if _, err := e.checkpoint(false); err != nil {
				return err
			}
		}
	}
	clear(e.pending)
	e.pending = e.pending[:0]
	for e.b <= e.maxBatch {
		if _, err := e.checkpoint(true); err != nil {
			return err
		}
	}
	if !e.dry {
		e.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "end of input, flushed",
			slog.Int("next_batch", int(e.b)))
		return nil
	}
	return e.endDry(nil)
}

// endDry ends the count of the records left out: the run's counters are
// those of where the original stopped, plus UnflushedRecords. readErr is
// the error that cut the count short (input past the original's end that
// could not be read), or nil.
func (e *engine) endDry(readErr error) error {
	left := e.dryRecords
	*e.stats = e.saved
	e.stats.UnflushedRecords = left
	if readErr != nil {
		e.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn,
			"end of input: records left unwritten, as the original assemble leaves them, at least this many (the input after where the original stops could not be read); --flush-at-eof writes them",
			slog.Uint64("unflushed_records", left), slog.Uint64("written_records", e.stats.Records),
			slog.Uint64("unflushed_events", e.stats.Unflushed), slog.Int("next_batch", e.nextBatch),
			slog.String("err", readErr.Error()))
		return nil
	}
	if left == 0 {
		e.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "end of input",
			slog.Int("next_batch", e.nextBatch), slog.Uint64("unflushed", e.stats.Unflushed))
		return nil
	}
	// The original's behaviour, copied, loses these records silently; say
	// so, and how to keep them.
	e.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn,
		"end of input: records left unwritten, as the original assemble leaves them; --flush-at-eof writes them",
		slog.Uint64("unflushed_records", left), slog.Uint64("written_records", e.stats.Records),
		slog.Uint64("unflushed_events", e.stats.Unflushed), slog.Int("next_batch", e.nextBatch))
	return nil
}
