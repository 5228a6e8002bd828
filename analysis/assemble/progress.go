package assemble

import (
	"fmt"
	"strings"
	"time"
)

// ProgressRows is how many rows pass between two calls of
// Config.OnProgress within a file: often enough for a display that
// refreshes a few times a second at a million rows/s, rarely enough to cost
// nothing per row.
const ProgressRows = 1 << 16

// Progress is a snapshot of a run for a progress display.
type Progress struct {
	// FilesOpened counts the hourly files opened so far, both log types.
	// FilesTotal is how many files the input has from the start hour on;
	// 0 when following a live directory (unknown).
	FilesOpened, FilesTotal int
	// Rows counts the data rows read, raw and scamper.
	Rows uint64
	// BytesRead and BytesTotal are the input bytes read so far and in all
	// (as stored: compressed for .gz files); BytesTotal is 0 when unknown.
	BytesRead, BytesTotal int64
	// Hour is the hour of the raw rows being read.
	Hour time.Time
	// Records counts the records written so far.
	Records uint64
	// Done is set on the last call, when Run returns.
	Done bool
}

// Line formats p for a progress line, elapsed being the time since the run
// began: when the input's size is known, the share read and an estimate of
// the time left (from the bytes read so far) first, so that a narrow
// terminal cuts the least useful part; then the files, rows and rows/s, the
// hour and the records written.
func (p Progress) Line(elapsed time.Duration) string {
	var parts []string
	switch {
	case p.Done:
		parts = append(parts, "done in "+roundDuration(elapsed).String())
	case p.BytesTotal > 0:
		read := min(p.BytesRead, p.BytesTotal)
		head := fmt.Sprintf("%d%%", read*100/p.BytesTotal)
		if read > 0 && elapsed > 0 {
			left := time.Duration(float64(elapsed) * float64(p.BytesTotal-read) / float64(read))
			head += " ETA " + roundDuration(left).String()
		}
		parts = append(parts, head)
	}
	if p.FilesTotal > 0 {
		parts = append(parts, fmt.Sprintf("files %d/%d", p.FilesOpened, p.FilesTotal))
	} else {
		parts = append(parts, fmt.Sprintf("files %d", p.FilesOpened))
	}
	rows := humanCount(float64(p.Rows)) + " rows"
	if s := elapsed.Seconds(); s > 0 {
		rows += ", " + humanCount(float64(p.Rows)/s) + "/s"
	}
	parts = append(parts, rows)
	if !p.Hour.IsZero() {
		parts = append(parts, "hour "+p.Hour.UTC().Format("2006-01-02T15"))
	}
	parts = append(parts, humanCount(float64(p.Records))+" records")
	return strings.Join(parts, " | ")
}

// humanCount writes n with about three significant figures and a k/M/G
// suffix.
func humanCount(n float64) string {
	units := []string{"", "k", "M", "G"}
	i := 0
	for n >= 999.5 && i < len(units)-1 {
		n /= 1000
		i++
	}
	switch {
	case i == 0 || n >= 99.95:
		return fmt.Sprintf("%.0f%s", n, units[i])
	case n >= 9.995:
		return fmt.Sprintf("%.1f%s", n, units[i])
	default:
		return fmt.Sprintf("%.2f%s", n, units[i])
	}
}

// roundDuration rounds to what a person reads: seconds from 10 s on,
// tenths below.
func roundDuration(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
