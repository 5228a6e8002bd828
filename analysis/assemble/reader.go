package assemble

// The original's LiveReader: one reader per log type walks
// the hourly files from the start hour on. Every prepared or skipped hour
// takes the next batch id. nextBatch returns all complete lines that the
// open files have, opening the next hour's file only when the open ones gave
// nothing. Offline, the reader reports the end of the input where the
// original would block forever; when following a live directory it polls.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Timeouts of the original's live reader.
const (
	// skipAfter: a missing hourly file is skipped this long after its hour
	// began.
	skipAfter = time.Hour + 5*time.Minute
	// finishedAfter: an open file that gives nothing is closed this long
	// after its hour began.
	finishedAfter = time.Hour + 10*time.Minute
)

// logFile is one open hourly file.
type logFile struct {
	hour   time.Time
	batch  int32
	f      *os.File
	gz     bool // read through gzip
	br     *bufio.Reader
	header bool   // the header line has been read
	buf    []byte // partial line carried over to the next read
	eof    bool   // a compressed file has been read to its end
}

// hourReader reads the hourly files of one log type.
type hourReader struct {
	dir, tag, logType string
	// next is the hour and batch id of the upcoming file.
	next   time.Time
	nextID int32
	files  []*logFile
	// follow: wait for files instead of ending at the last one.
	follow bool
	poll   time.Duration
	now    func() time.Time
	// lastHour is the hour of the newest file in the directory (offline).
	lastHour time.Time
	haveLast bool
	// line receives each complete data line (rstrip not yet applied) and
	// its batch id; header receives each file's header.
	header  func(h []byte)
	line    func(l []byte, batch int32)
	bufSize int
	// read counts the bytes read from the files (compressed bytes for
	// .gz), opened is called after each file is opened; both for the
	// progress display. totalFiles and totalBytes are the files from the
	// start hour on and their sizes (offline, after scanLast).
	read       *int64
	opened     func()
	totalFiles int
	totalBytes int64
}

// countingReader counts the bytes read through it into n.
type countingReader struct {
	r io.Reader
	n *int64
}

// counted returns f, counting into r.read if set.
func (r *hourReader) counted(f *os.File) io.Reader {
	if r.read == nil {
		return f
	}
	return countingReader{f, r.read}
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	*c.n += int64(k)
	return k, err
}

func fileName(hour time.Time, tag, logType string) string {
	return fmt.Sprintf("%s.%s.spoki.tcp.%s.%d.csv", hour.UTC().Format("2006-01-02.15:04:05"), tag, logType, hour.Unix())
}

// scanLast finds the newest hour that has a file of this log type, and the
// files that the reader will open from its start hour on with their sizes.
func (r *hourReader) scanLast() error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("assemble: read log dir: %w", err)
	}
	mid := "." + r.tag + ".spoki.tcp." + r.logType + "."
	// The size of each hour's file: the .csv where both exist, as open
	// prefers it.
	type sized struct {
		size int64
		csv  bool
	}
	hours := map[int64]sized{}
	for _, e := range ents {
		gz := strings.HasSuffix(e.Name(), ".gz")
		name := strings.TrimSuffix(e.Name(), ".gz")
		if !strings.HasSuffix(name, ".csv") || !strings.Contains(name, mid) {
			continue
		}
		i := strings.LastIndex(name[:len(name)-4], ".")
		unix, err := strconv.ParseInt(name[i+1:len(name)-4], 10, 64)
		if err != nil {
			continue
		}
		h := time.Unix(unix, 0).UTC()
		if fileName(h, r.tag, r.logType) != name {
			continue
		}
		if !r.haveLast || h.After(r.lastHour) {
			r.lastHour, r.haveLast = h, true
		}
		if h.Before(r.next) {
			continue
		}
		if prev, ok := hours[unix]; ok && prev.csv {
			continue
		}
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		hours[unix] = sized{size, !gz}
	}
	r.totalFiles, r.totalBytes = len(hours), 0
	for _, s := range hours {
		r.totalBytes += s.size
	}
	return nil
}

// open opens the upcoming file, .csv first, then .csv.gz. It returns false
// if neither exists.
func (r *hourReader) open() (bool, error) {
	base := filepath.Join(r.dir, fileName(r.next, r.tag, r.logType))
	lf := &logFile{hour: r.next, batch: r.nextID}
	f, err := os.Open(base)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(base + ".gz")
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("assemble: open %s.gz: %w", base, err)
		}
		gz, err := records.NewLogReader(bufio.NewReaderSize(r.counted(f), 1<<16), true)
		if err != nil {
			f.Close()
			return false, fmt.Errorf("assemble: open %s.gz: %w", base, err)
		}
		lf.gz = true
		lf.br = bufio.NewReaderSize(gz, r.bufSize)
	} else if err != nil {
		return false, fmt.Errorf("assemble: open %s: %w", base, err)
	} else {
		lf.br = bufio.NewReaderSize(r.counted(f), r.bufSize)
	}
	lf.f = f
	r.files = append(r.files, lf)
	r.advance()
	if r.opened != nil {
		r.opened()
	}
	return true, nil
}

// advance prepares the next hour with the next batch id.
func (r *hourReader) advance() {
	r.next = r.next.Add(time.Hour)
	r.nextID++
}

func (lf *logFile) close() {
	lf.f.Close()
}

func (r *hourReader) closeAll() {
	for _, lf := range r.files {
		lf.close()
	}
	r.files = nil
}

// consume reads every complete line that lf has now and returns how many
// data lines it passed on.
func (r *hourReader) consume(lf *logFile) (int, error) {
	n := 0
	for {
		chunk, err := lf.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			lf.buf = append(lf.buf, chunk...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("assemble: read %s log of %s: %w", r.logType, lf.hour.Format(time.DateTime), err)
		}
		line := chunk
		if len(lf.buf) > 0 {
			lf.buf = append(lf.buf, chunk...)
			line = lf.buf
		}
		if err != nil { // io.EOF: keep the partial line for later
			if lf.gz {
				lf.eof = true
			}
			if len(lf.buf) == 0 && len(chunk) > 0 {
				lf.buf = append(lf.buf, chunk...)
			}
			return n, nil
		}
		if !lf.header {
			lf.header = true
			r.header(line)
		} else {
			r.line(line, lf.batch)
			n++
		}
		lf.buf = lf.buf[:0]
	}
}

// errEnd reports that the input is exhausted where the original would
// wait forever.
var errEnd = errors.New("end of input")

// nextBatch is the original's next_batch: it returns once at least one row
// was passed on, with errEnd at the end of the input (offline) or the
// context's error.
func (r *hourReader) nextBatch(ctx context.Context) (int, error) {
	for {
		items := 0
		kept := r.files[:0]
		for _, lf := range r.files {
			n, err := r.consume(lf)
			if err != nil {
				return items, err
			}
			items += n
			if n == 0 && !r.expectMore(lf) {
				lf.close()
				continue
			}
			kept = append(kept, lf)
		}
		clear(r.files[len(kept):])
		r.files = kept
		if items > 0 {
			return items, nil
		}
		opened, err := r.open()
		if err != nil {
			return 0, err
		}
		if opened {
			continue
		}
		switch {
		case !r.follow && (!r.haveLast || r.next.After(r.lastHour)):
			if len(r.files) == 0 {
				return 0, errEnd
			}
		case r.now().After(r.next.Add(skipAfter)):
			// A missing hour takes a batch id too.
			r.advance()
			continue
		}
		if !r.follow {
			// Offline, the open files are complete: nothing will come.
			r.closeAll()
			return 0, errEnd
		}
		t := time.NewTimer(r.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// expectMore is the original's test whether an open file that gave nothing
// may still grow.
func (r *hourReader) expectMore(lf *logFile) bool {
	if !r.follow || lf.eof {
		return false
	}
	return !r.now().After(lf.hour.Add(finishedAfter))
}
