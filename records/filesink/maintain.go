package filesink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

const (
	// compressQueue is how many closed files may wait for the compressor.
	// An hour closes five files; a file that does not fit is not lost, it
	// stays plain until the next sweep queues it again.
	compressQueue = 64
	// sweepInterval is how often the maintenance goroutine looks for files
	// to remove (Config.Keep) and plain files it has not compressed yet.
	sweepInterval = time.Hour
	// compressChunkBytes is how much the compressor reads between two
	// checks for Close, so that Close never waits for a whole file.
	compressChunkBytes = 256 << 10
	// tmpSuffix ends the name of a gzip being written; it becomes NAME.gz
	// only once complete and synced.
	tmpSuffix = ".gz.tmp"
)

// errCompressAborted stops a compression when the Writer closes; the plain
// file stays and the next start compresses it.
var errCompressAborted = errors.New("filesink: compression aborted by close")

// fileLocks coordinates the writer goroutine and the maintenance goroutine
// over the files of the log directory: a file the writer has open is never
// compressed or removed, and a file the writer opens while it is being
// compressed keeps its plain copy.
type fileLocks struct {
	mu sync.Mutex
	// open counts the writer's open descriptors per path.
	open map[string]int
	// compressing is the path being compressed ("" for none); cancelled
	// says the writer opened it meanwhile, so the gzip must be thrown away
	// (the plain file is growing again).
	compressing string
	cancelled   bool
}

// opening notes that the writer is about to open path.
func (l *fileLocks) opening(path string) {
	l.mu.Lock()
	l.open[path]++
	if l.compressing == path {
		l.cancelled = true
	}
	l.mu.Unlock()
}

// closed notes that the writer closed path (or failed to open it).
func (l *fileLocks) closed(path string) {
	l.mu.Lock()
	if l.open[path]--; l.open[path] <= 0 {
		delete(l.open, path)
	}
	l.mu.Unlock()
}

// queueCompress hands a closed file to the compressor without blocking the
// writer goroutine; a full queue leaves it for the next sweep.
func (w *Writer) queueCompress(path string) {
	if !w.cfg.Compress {
		return
	}
	select {
	case w.compressQ <- path:
	default:
		w.c.compressQueueFull.Add(1)
	}
}

// maintainLoop is the maintenance goroutine: it compresses closed files one
// at a time and, at start and every sweepInterval, removes files older than
// Config.Keep and queues plain files of finished hours left by an earlier
// run, a full queue or a failed compression.
func (w *Writer) maintainLoop() {
	defer close(w.maintainDone)
	tick := time.NewTicker(w.sweepEvery)
	defer tick.Stop()
	pending := w.sweep(time.Now())
	for {
		// Files found by a sweep go first, one per round, so that Close and
		// the queue are served in between.
		if len(pending) > 0 {
			select {
			case <-w.maintainQuit:
				return
			default:
			}
			w.compress(pending[0])
			pending = pending[1:]
			continue
		}
		select {
		case <-w.maintainQuit:
			return
		case path := <-w.compressQ:
			w.compress(path)
		case now := <-tick.C:
			pending = w.sweep(now)
		}
	}
}

// logFile parses a name of the log directory: the hour it holds and whether
// it is gzipped or a compressor's temporary file. ok is false for files
// that are not this Writer's logs (another tag, another program).
func (w *Writer) logFile(name string) (hour int64, gz, tmp, ok bool) {
	base := name
	if b, found := strings.CutSuffix(name, tmpSuffix); found && strings.HasPrefix(b, ".") {
		base, tmp = b[1:], true
	} else if b, found := strings.CutSuffix(name, ".gz"); found {
		base, gz = b, true
	}
	i := strings.LastIndexByte(base, '.')
	if i < 0 {
		return 0, false, false, false
	}
	stem, ext := base[:i], base[i+1:]
	j := strings.LastIndexByte(stem, '.')
	if j < 0 {
		return 0, false, false, false
	}
	switch ext {
	case "csv":
		n, err := strconv.ParseInt(stem[j+1:], 10, 64)
		if err != nil {
			return 0, false, false, false
		}
		hour = n
	case "jsonl":
		t, err := time.Parse("20060102-15", stem[j+1:])
		if err != nil {
			return 0, false, false, false
		}
		hour = t.Unix()
	default:
		return 0, false, false, false
	}
	// Only a name this Writer would make counts: the streams are fixed
	// after newWriter and their name functions are pure.
	for _, s := range w.streams {
		if s.name(hour) == base {
			return hour, gz, tmp, true
		}
	}
	return 0, false, false, false
}

// sweep removes the files whose hour ended more than Config.Keep before
// now, and the temporary files of an interrupted compression, and returns
// the plain files of hours before the previous one, to be compressed. It
// runs on the maintenance goroutine, so no compression is under way.
func (w *Writer) sweep(now time.Time) []string {
	entries, err := w.readDir()
	if err != nil {
		w.maintainError("sweep", w.cfg.Dir, err)
		return nil
	}
	var compress []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		hour, gz, tmp, ok := w.logFile(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(w.cfg.Dir, e.Name())
		switch {
		case tmp:
			w.remove(path, false)
		case w.cfg.Keep > 0 && now.Sub(time.Unix(hour+3600, 0)) > w.cfg.Keep:
			w.remove(path, true)
		case w.cfg.Compress && !gz && hour < hourOf(now)-3600:
			// Older than the previous hour: the writer keeps the current
			// and previous hour open and only reopens older ones for late
			// records, which compress checks for.
			compress = append(compress, path)
		}
	}
	return compress
}

// remove deletes path unless the writer has it open; counted says whether
// it is an expired log (FilesRemoved) rather than a stale temporary file.
func (w *Writer) remove(path string, counted bool) {
	w.files.mu.Lock()
	busy := w.files.open[path] > 0
	var err error
	if !busy {
		err = w.root.Load().Remove(filepath.Base(path))
	}
	w.files.mu.Unlock()
	switch {
	case busy:
	case err != nil && !errors.Is(err, os.ErrNotExist):
		w.c.removeErrors.Add(1)
		w.maintainError("remove", path, err)
	case counted:
		w.c.filesRemoved.Add(1)
		w.logger.Info("remove", "file", path, "keep", w.cfg.Keep)
	}
}

// compress gzips path into path.gz and removes path. The gzip is written to
// a temporary file, synced and renamed, so that path.gz is always whole; the
// plain file goes only after that. A file the writer has open, or opens
// meanwhile, stays plain, as does one whose .gz already exists (late rows for
// an hour compressed before: they stay readable next to it).
func (w *Writer) compress(path string) {
	w.files.mu.Lock()
	if w.files.open[path] > 0 {
		w.files.mu.Unlock()
		return
	}
	w.files.compressing, w.files.cancelled = path, false
	w.files.mu.Unlock()
	defer func() {
		w.files.mu.Lock()
		w.files.compressing = ""
		w.files.mu.Unlock()
	}()
	// Names relative to the directory handle: the maintenance goroutine
	// runs as the unprivileged user, who may not reach the directory by
	// its path.
	root := w.root.Load()
	name := filepath.Base(path)
	if _, err := root.Lstat(name + ".gz"); err == nil {
		return
	}
	tmp := "." + name + tmpSuffix
	in, out, err := w.gzipTo(root, name, tmp)
	if err != nil {
		root.Remove(tmp)
		if errors.Is(err, errCompressAborted) || errors.Is(err, os.ErrNotExist) {
			return // closing, or removed meanwhile (Keep, an operator)
		}
		w.c.compressErrors.Add(1)
		w.maintainError("compress", path, err)
		return
	}
	w.files.mu.Lock()
	if w.files.cancelled {
		w.files.mu.Unlock()
		root.Remove(tmp)
		return // the writer appends again; it queues the file when done
	}
	err = root.Rename(tmp, name+".gz")
	if err == nil {
		// The rename must be durable before the only other copy goes.
		err = syncDir(root)
		if err == nil {
			err = root.Remove(name)
		}
	}
	w.files.mu.Unlock()
	if err != nil {
		root.Remove(tmp)
		w.c.compressErrors.Add(1)
		w.maintainError("compress", path, err)
		return
	}
	w.c.filesCompressed.Add(1)
	w.logger.Info("compress", "file", path, "bytes_in", in, "bytes_out", out)
}

// gzipTo writes the gzip of src to tmp, both in root, and syncs it,
// returning the sizes read and written. It stops with errCompressAborted
// when the Writer closes. The gzip gets FileMode, like the plain file.
func (w *Writer) gzipTo(root *os.Root, src, tmp string) (in, out int64, err error) {
	r, err := root.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	zw := newGzipWriter(f, w.cfg.CompressWorkers)
	// On a return before the Close below, this Close ends pgzip's
	// goroutines (the temporary file goes); after it, it does nothing.
	defer zw.Close()
	buf := make([]byte, compressChunkBytes)
	for {
		select {
		case <-w.maintainQuit:
			return in, 0, errCompressAborted
		default:
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := zw.Write(buf[:n]); err != nil {
				return in, 0, err
			}
			in += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return in, 0, rerr
		}
	}
	if err := zw.Close(); err != nil {
		return in, 0, err
	}
	if err := f.Sync(); err != nil {
		return in, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return in, 0, err
	}
	return in, st.Size(), f.Close()
}

// syncDir makes the directory's entries (a rename) durable.
func syncDir(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readDir lists the log directory through its handle.
func (w *Writer) readDir() ([]os.DirEntry, error) {
	d, err := w.root.Load().Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// maintainError counts nothing itself (the caller does) and logs at most
// once per errorLogInterval: a full disk fails every compression. Nothing is
// lost: the plain file stays.
func (w *Writer) maintainError(op, path string, err error) {
	if now := time.Now(); now.Sub(w.lastMaintainErrLog) >= errorLogInterval {
		w.lastMaintainErrLog = now
		w.logger.Warn("maintenance failed", "op", op, "file", path, "err", err,
			"compress_errors", w.c.compressErrors.Load(), "remove_errors", w.c.removeErrors.Load())
	}
}

// Chown hands the log directory and the log files of tag in it to uid
// and gid, so that the writer can go on after the process switched to that
// user (privs.Drop): files of the current hour made by an earlier
// run as root would otherwise refuse the appends. It also takes away what
// FileMode and DirMode do not grant (a directory or files an earlier
// version made 0755 and 0644).
//
// Chown runs as root, in a directory that an unprivileged user owned in
// an earlier run, so it follows no symbolic link: dir itself must not be
// one (an error says so), and each file is opened with O_NOFOLLOW and
// changed through its descriptor, so that a link planted in place of a
// log file cannot hand over the file it points to. Other files, links,
// and files with more than one hard link are left alone, and so is a
// shared directory (sticky or writable by all, as /tmp): only its log
// files are handed over. A directory the user does not own yet is
// handed over only if it holds nothing but log files of tag: Chown
// refuses to give away a directory root keeps other things in.
func Chown(dir, tag string, uid, gid int) error {
	if tag == "" {
		tag = DefaultTag
	}
	// Only the file names of a Writer are used: no queue, no goroutine.
	w := &Writer{cfg: Config{Dir: dir, Tag: tag}}
	w.initStreams()
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if st, lerr := os.Lstat(dir); err != nil && lerr == nil && st.Mode()&os.ModeSymlink != 0 {
		// ELOOP, or ENOTDIR with O_DIRECTORY.
		return fmt.Errorf("filesink: chown: log dir %s is a symbolic link: give the directory it points to", dir)
	}
	if err != nil {
		return fmt.Errorf("filesink: chown: open %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(dfd), dir) // closes dfd
	defer d.Close()
	var dst unix.Stat_t
	if err := unix.Fstat(dfd, &dst); err != nil {
		return fmt.Errorf("filesink: chown: stat %s: %w", dir, err)
	}
	entries, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("filesink: chown: %w", err)
	}
	// A shared directory (sticky or writable by all, as /tmp) is not
	// spoki's to take: the user can make its files there already, and
	// taking it would lock everybody else out.
	if dst.Mode&(unix.S_ISVTX|0o002) == 0 {
		// Nor is a directory that holds anything but this tag's logs
		// (--log-dir . in root's home, /var/log): its new owner could
		// replace what root trusts there. One the user already owns was
		// handed over by an earlier run.
		if int(dst.Uid) != uid {
			for _, e := range entries {
				if _, _, _, ok := w.logFile(e.Name()); !ok || !e.Type().IsRegular() {
					return fmt.Errorf("filesink: log dir %s holds %q, which is not a log file of tag %s: give spoki a directory of its own (or chown it to uid %d yourself)", dir, e.Name(), tag, uid)
				}
			}
		}
		if err := fchown(dfd, uid, gid, uint32(DirMode)); err != nil {
			return fmt.Errorf("filesink: chown %s: %w", dir, err)
		}
	}
	var errs []error
	for _, e := range entries {
		if _, _, _, ok := w.logFile(e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		fd, err := unix.Openat(dfd, e.Name(), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOENT) {
			continue // replaced by a link, or removed, since the listing
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("filesink: chown: open %s: %w", e.Name(), err))
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 {
			err = fchown(fd, uid, gid, uint32(FileMode))
		}
		unix.Close(fd)
		if err != nil {
			errs = append(errs, fmt.Errorf("filesink: chown %s: %w", filepath.Join(dir, e.Name()), err))
		}
	}
	return errors.Join(errs...)
}

// fchown gives the open file fd to uid:gid and clears the mode bits that
// max does not have.
func fchown(fd, uid, gid int, max uint32) error {
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if mode := st.Mode & 0o7777; mode&^max != 0 {
		return unix.Fchmod(fd, mode&max)
	}
	return nil
}

// compressBlockBytes is the block that each of Config.CompressWorkers
// deflates at once: the whole file's gzip is one member made of blocks
// deflated in parallel, each with the last 32 KiB of the block before it
// as its dictionary, so that a flood's events compress to 0.1584 of their
// size instead of one stream's 0.1583. A worker holds its block, the
// block's output, the next one's dictionary (in a buffer of a block) and a
// deflater (736 KiB): about 1.5 MiB at this size, four times that at
// pgzip's default of 1 MiB.
const compressBlockBytes = 256 << 10

// newGzipWriter returns the gzip writer of one closed file: klauspost's
// gzip on the calling goroutine for one worker, else klauspost's pgzip
// with that many blocks deflated at once (each up to compressBlockBytes
// in and out, and its deflater's state).
func newGzipWriter(w io.Writer, workers int) io.WriteCloser {
	if workers <= 1 {
		return gzip.NewWriter(w)
	}
	zw := pgzip.NewWriter(w)
	if err := zw.SetConcurrency(compressBlockBytes, workers); err != nil {
		panic(err) // the block size is a constant above pgzip's minimum, workers > 1
	}
	return zw
}
