package download

// The files of the store besides the samples: the gzip CSV logs written as
// Python's csv module writes them, and the rate-limit table.

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Headers of the CSV logs, as the original's download writes them.
const (
	activityHeader  = "ts|saddr|daddr|sport|dport|tag|url|rdns|attempted|status|hash"
	downloadsHeader = "name|url|timestamp|server|tag"
)

// maxNameBytes caps the NAME part of an activity file name.
const maxNameBytes = 100

// csvField quotes f as Python's csv.writer with QUOTE_MINIMAL, delimiter
// '|' and lineterminator "\r\n" does: when it contains the delimiter, the
// quote character or a line-end character, with inner quotes doubled.
func csvField(f string) string {
	if !strings.ContainsAny(f, "|\"\r\n") {
		return f
	}
	return `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
}

// csvRow joins the fields into one CRLF-terminated row.
func csvRow(fields ...string) string {
	var sb strings.Builder
	for i, f := range fields {
		if i > 0 {
			sb.WriteByte('|')
		}
		sb.WriteString(csvField(f))
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// appendGzipRow appends row to the gzip file path as a new gzip member,
// preceded by header when the file is new, as the original's "at" mode
// does. The file is closed after each row so that a killed run leaves only
// complete members behind. One gzip.Writer is reused (Reset), as a new
// one costs a compressor's worth of memory per row. d.mu is held.
func (d *Downloader) appendGzipRow(path, header, row string) error {
	_, err := os.Stat(path)
	fresh := errors.Is(err, fs.ErrNotExist)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return storeError{fmt.Errorf("download: open %s: %w", path, err)}
	}
	if d.zw == nil {
		d.zw = gzip.NewWriter(f)
	} else {
		d.zw.Reset(f)
	}
	zw := d.zw
	if fresh {
		row = header + "\r\n" + row
	}
	_, werr := zw.Write([]byte(row))
	if err := errors.Join(werr, zw.Close(), f.Close()); err != nil {
		return storeError{fmt.Errorf("download: write %s: %w", path, err)}
	}
	return nil
}

// activityName is the NAME of the activity file: the URL's file name, or
// the server, made safe as a file name.
func activityName(t Target) string {
	name := t.Name
	if name == "" {
		name = t.Server
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	name = string(b)
	if name == "" || name[0] == '.' {
		name = "_" + name
	}
	if len(name) > maxNameBytes {
		name = name[:maxNameBytes]
	}
	return name
}

// writeActivity appends the activity row of r.
func (d *Downloader) writeActivity(t Target, rdns string, r Result, now time.Time) error {
	path := filepath.Join(d.cfg.Dir, "activity", activityName(t)+"."+now.UTC().Format("2006.01")+".csv.gz")
	row := csvRow(strconv.FormatInt(t.TS, 10), t.Saddr, t.Daddr, itoa(t.Sport), itoa(t.Dport), t.Tag,
		t.URL, rdns, pyBool(r.Attempted), r.Status, r.SHA256)
	return d.appendGzipRow(path, activityHeader, row)
}

// writeDownloadRow appends the sample's downloads row.
func (d *Downloader) writeDownloadRow(t Target, sum string, start time.Time) error {
	path := filepath.Join(d.cfg.Dir, "malware", sum, "downloads.csv.gz")
	return d.appendGzipRow(path, downloadsHeader, csvRow(t.Name, t.URL, formatTS(start), t.Server, t.Tag))
}

func (d *Downloader) triedPath() string { return filepath.Join(d.cfg.Dir, "tried.tsv") }

// loadTried reads the rate-limit table: lines "UNIX-expiry TAB url"; the
// last line of a URL wins, bad lines are ignored (a killed run may leave
// half a line). The expiries are in Unix nanoseconds; the records come in
// the order of their last lines.
func loadTried(path string) ([]qrec, error) {
	m := map[string]int{}
	var recs []qrec
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("download: open %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		exp, u, ok := strings.Cut(sc.Text(), "\t")
		sec, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || u == "" || len(u) > MaxURLBytes {
			continue
		}
		if i, ok := m[u]; ok {
			recs[i].url = "" // superseded
		}
		m[u] = len(recs)
		recs = append(recs, qrec{u, time.Unix(sec, 0).UnixNano()})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("download: read %s: %w", path, err)
	}
	return slices.DeleteFunc(recs, func(r qrec) bool { return r.url == "" }), nil
}

// rewriteTried writes the live entries to a fresh table and returns it
// open for appending, so that the file does not grow without bound.
func rewriteTried(path string, recs []qrec) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("download: create %s: %w", tmp, err)
	}
	bw := bufio.NewWriter(f)
	for _, r := range recs {
		fmt.Fprintf(bw, "%d\t%s\n", time.Unix(0, r.exp).Unix(), r.url)
	}
	if err := errors.Join(bw.Flush(), f.Close()); err != nil {
		return nil, fmt.Errorf("download: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("download: replace %s: %w", path, err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("download: open %s: %w", path, err)
	}
	return f, nil
}

// compactSlack is how many lines tried.tsv may hold beyond twice its live
// entries before it is rewritten.
const compactSlack = 1024

// markTried records a try before the fetch starts, so that a crash during
// a fetch still counts it. It rewrites tried.tsv when most of its lines
// are dead (expired, evicted or superseded), so that the file stays within
// twice the table plus compactSlack lines. d.mu is held.
func (d *Downloader) markTried(u string, exp time.Time, now time.Time) error {
	// Such a URL cannot be one line of the table; it stays limited in
	// memory only. urls.Extract never yields one.
	inFile := !strings.ContainsAny(u, "\t\n\r")
	d.table.set(u, entry{exp: exp.UnixNano(), inFile: inFile}, now.UnixNano())
	if !inFile {
		return nil
	}
	if _, err := fmt.Fprintf(d.tried, "%d\t%s\n", exp.Unix(), u); err != nil {
		return storeError{fmt.Errorf("download: write %s: %w", d.triedPath(), err)}
	}
	d.triedLines++
	if d.triedLines > 2*d.table.inFile+compactSlack {
		if err := d.tried.Close(); err != nil {
			return storeError{fmt.Errorf("download: close %s: %w", d.triedPath(), err)}
		}
		recs := d.table.triedEntries()
		f, err := rewriteTried(d.triedPath(), recs)
		if err != nil {
			return storeError{err}
		}
		d.tried, d.triedLines = f, len(recs)
		d.Stats.Compactions++
	}
	return nil
}
