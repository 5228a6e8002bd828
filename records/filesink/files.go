package filesink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// stream is one log (raw TCP, raw UDP, raw ICMP, reply, events) and its
// open hour files. Only the writer goroutine touches it.
type stream struct {
	// log names the stream in log lines ("tcp.raw", "events").
	log string
	// header is written as the first line of a new file ("" for none).
	header string
	// written counts the stream's rows that reached the kernel.
	written *atomic.Uint64
	// name returns the file name for the hour starting at hour (Unix s).
	name func(hour int64) string
	// cur and prev are the newest hour and the one before; old is a file
	// reopened for an older hour, closed at the next flush tick.
	cur, prev, old *hourFile
	// openRetryAt is when opening may be tried again after a failure.
	openRetryAt time.Time
}

// hourFile is one open log file and its unwritten bytes. A hand-rolled
// buffer rather than bufio.Writer: bufio's errors are sticky and Reset
// discards the buffer, while this one keeps the unwritten tail across a
// failed write (disk full) and writes it, completing the partial row, once
// the disk has room again.
type hourFile struct {
	s    *stream
	hour int64
	path string
	f    *os.File
	buf  []byte
	// rows counts the rows that end in buf, tallied as they are added:
	// a flush that writes it all counts them without reading it again.
	rows int
	// retryAt is when writing may be tried again after a failure.
	retryAt time.Time
	// size is the file's length: at open, and what the writes added.
	// allocEnd is the end of the blocks reserved for it (reserve);
	// reserving says whether to reserve, reserved whether any blocks may
	// lie past its end (release).
	size, allocEnd      int64
	reserving, reserved bool
}

// write appends line (one or more complete rows) to the file of hour,
// opening or rotating files as needed. Rows that cannot be buffered are
// counted in DropWriteError.
func (s *stream) write(w *Writer, hour int64, line []byte) {
	f := s.fileFor(w, hour)
	if f == nil {
		w.c.dropWriteError.Add(uint64(bytes.Count(line, []byte{'\n'})))
		return
	}
	if len(f.buf)+len(line) > w.maxPending {
		if !time.Now().Before(f.retryAt) {
			f.flush(w)
		}
		if len(f.buf)+len(line) > w.maxPending {
			w.c.dropWriteError.Add(uint64(bytes.Count(line, []byte{'\n'})))
			return
		}
	}
	f.buf = append(f.buf, line...)
	f.rows += bytes.Count(line, []byte{'\n'})
	if len(f.buf) >= flushBytes && !time.Now().Before(f.retryAt) {
		f.flush(w)
	}
}

// commit finishes the row appended straight to f.buf since it was n bytes
// long (one row: the encoders write one line each), as write does for rows
// encoded elsewhere: over the cap on unwritten bytes (writes are failing)
// it is taken out again and goes write's way, and a full buffer is
// written.
func (f *hourFile) commit(w *Writer, n int) {
	if len(f.buf) > w.maxPending {
		w.enc = append(w.enc[:0], f.buf[n:]...)
		f.buf = f.buf[:n]
		f.s.write(w, f.hour, w.enc)
		return
	}
	f.rows++
	if len(f.buf) >= flushBytes && !time.Now().Before(f.retryAt) {
		f.flush(w)
	}
}

// fileFor returns the open file for hour, or nil if it cannot be opened.
// A newer hour rotates: the previous hour's file is closed, the current one
// becomes the previous (or is closed too if the gap is more than an hour).
// The previous hour keeps its file; anything older is reopened in the old
// slot, never dropped.
func (s *stream) fileFor(w *Writer, hour int64) *hourFile {
	switch {
	case s.cur != nil && hour == s.cur.hour:
		return s.cur
	case s.prev != nil && hour == s.prev.hour:
		return s.prev
	case s.old != nil && hour == s.old.hour:
		return s.old
	}
	if s.cur == nil || hour > s.cur.hour {
		f := s.open(w, hour)
		if f == nil {
			return nil
		}
		if s.prev != nil {
			w.closeFile(s, s.prev, "rotate")
			s.prev = nil
		}
		if s.cur != nil && hour == s.cur.hour+3600 {
			s.prev = s.cur
		} else if s.cur != nil {
			w.closeFile(s, s.cur, "rotate")
		}
		s.cur = f
		return f
	}
	f := s.open(w, hour)
	if f == nil {
		return nil
	}
	if s.prev == nil && hour == s.cur.hour-3600 {
		s.prev = f
		return f
	}
	if s.old != nil {
		w.closeFile(s, s.old, "close")
	}
	s.old = f
	return f
}

// open opens (creating if needed, in append mode) the file for hour and
// writes the header if the file is empty.
func (s *stream) open(w *Writer, hour int64) *hourFile {
	if time.Now().Before(s.openRetryAt) {
		return nil
	}
	name := s.name(hour)
	path := filepath.Join(w.cfg.Dir, name)
	w.files.opening(path)
	// Through the directory handle opened at start: after the drop of
	// root the path to the directory may be closed to this user.
	fd, err := w.root.Load().OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, FileMode)
	if errors.Is(err, os.ErrNotExist) && w.reopenRoot() {
		fd, err = w.root.Load().OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, FileMode)
	}
	if err != nil {
		w.files.closed(path)
		s.openRetryAt = time.Now().Add(w.retry)
		w.writeError("open", path, err)
		return nil
	}
	// The size places the reserve (reserve); a log without a header
	// does without it if Stat fails.
	st, serr := fd.Stat()
	size := int64(0)
	if serr == nil {
		size = st.Size()
	}
	if s.header != "" {
		err = serr
		if err == nil && size == 0 {
			var n int
			n, err = fd.WriteString(s.header + "\n")
			w.c.bytesWritten.Add(uint64(n))
			size += int64(n)
		}
	}
	if err != nil {
		fd.Close()
		w.files.closed(path)
		s.openRetryAt = time.Now().Add(w.retry)
		w.writeError("header", path, err)
		return nil
	}
	w.c.filesOpen.Add(1)
	f := &hourFile{s: s, hour: hour, path: path, f: fd, size: size, reserving: serr == nil && canReserve(fd)}
	if n := len(w.freeBufs); n > 0 {
		f.buf, w.freeBufs = w.freeBufs[n-1][:0], w.freeBufs[:n-1]
	} else {
		f.buf = make([]byte, 0, flushBytes+4096)
	}
	w.logger.Debug("open", "file", path)
	return f
}

// flush writes the buffer. What the kernel took is removed from it and its
// rows counted; the rest stays for the next attempt.
func (f *hourFile) flush(w *Writer) error {
	if len(f.buf) == 0 {
		return nil
	}
	f.reserve(len(f.buf))
	n, err := f.f.Write(f.buf)
	if n > 0 {
		f.size += int64(n)
		w.c.bytesWritten.Add(uint64(n))
		rows := f.rows
		if n < len(f.buf) {
			// A short write (a full disk): the rows it ended.
			rows = bytes.Count(f.buf[:n], []byte{'\n'})
		}
		f.s.written.Add(uint64(rows))
		f.rows -= rows
		f.buf = f.buf[:copy(f.buf, f.buf[n:])]
	}
	if err != nil {
		f.retryAt = time.Now().Add(w.retry)
		w.writeError("write", f.path, err)
		return fmt.Errorf("filesink: write %s: %w", f.path, err)
	}
	w.writeOK(f.path)
	return nil
}

// closeFile flushes and closes f, counting the rows it could not write.
// why is the log message: "rotate" (Info, an hour is done), "close"
// (Debug, an older hour reopened for late rows) or "final" (Debug, Close).
func (w *Writer) closeFile(s *stream, f *hourFile, why string) error {
	err := f.flush(w)
	if len(f.buf) > 0 {
		lost := f.rows
		w.c.dropWriteError.Add(uint64(lost))
		w.logger.Error("close lost rows", "file", f.path, "rows", lost, "bytes", len(f.buf))
	}
	if rerr := f.release(); rerr != nil {
		// The file keeps its content; only its reserve stays.
		w.logger.Debug("release reserve", "file", f.path, "err", rerr)
	}
	if cerr := f.f.Close(); cerr != nil {
		w.writeError("close", f.path, cerr)
		if err == nil {
			err = fmt.Errorf("filesink: close %s: %w", f.path, cerr)
		}
	}
	w.c.filesOpen.Add(-1)
	w.files.closed(f.path)
	if cap(f.buf) <= flushBytes+4096 {
		w.freeBufs = append(w.freeBufs, f.buf[:0])
	}
	f.buf = nil
	if why == "rotate" {
		w.logger.Info("rotate", "log", s.log, "file", f.path)
	} else {
		w.logger.Debug(why, "log", s.log, "file", f.path)
	}
	if why != "final" {
		// A rotated hour is done, and an older hour reopened for late rows
		// is done again. Files closed by Close are not: the next run may
		// append to the current hour.
		w.queueCompress(f.path)
	}
	return err
}
