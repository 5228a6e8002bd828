package assemble

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// ProgressEvery is how often RunWithStatus redraws the progress line.
const ProgressEvery = 250 * time.Millisecond

// RunWithStatus runs the assembly (Run), drawing its progress on status if
// there is one (nil: none) and erasing it at the end.
func RunWithStatus(ctx context.Context, cfg Config, sink Sink, stats *Stats, status *StatusLine) error {
	if status != nil {
		began := time.Now()
		var last time.Time
		cfg.OnProgress = func(p Progress) {
			if now := time.Now(); p.Done || now.Sub(last) >= ProgressEvery {
				last = now
				status.Set(p.Line(now.Sub(began)))
			}
		}
	}
	err := Run(ctx, cfg, sink, stats)
	if status != nil {
		status.Done()
	}
	return err
}

// DoneAttrs are the counters of the last log line of a run: stats, the
// files written and, if ks is not nil, what went to Kafka.
func DoneAttrs(stats *Stats, files *FileSink, ks *KafkaSink) []slog.Attr {
	attrs := []slog.Attr{slog.Uint64("rows", stats.Rows), slog.Uint64("confirmations", stats.Confirmations),
		slog.Uint64("records", stats.Records), slog.Uint64("batches", stats.Batches),
		slog.Uint64("skipped_rows", stats.RowsMissingColumn+stats.RowsBadValue),
		slog.Uint64("unflushed", stats.Unflushed), slog.Uint64("unflushed_records", stats.UnflushedRecords),
		slog.Int("files", len(files.Written))}
	if ks != nil {
		attrs = append(attrs, slog.Uint64("kafka_published", ks.Published()), slog.String("kafka_topic", ks.Topic()))
	}
	return attrs
}

// ParseStartHour accepts YYYY-MM-DDTHH, YYYY-MM-DD (hour 0) and RFC 3339
// on the hour, all in UTC unless an offset is given.
func ParseStartHour(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15", "2006-01-02", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if !t.Truncate(time.Hour).Equal(t) {
				return time.Time{}, fmt.Errorf("assemble: --start %q is not on the hour", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("assemble: --start %q: want YYYY-MM-DDTHH", s)
}

// StatusLine is a line at the bottom of a terminal that is redrawn in
// place; other output written through it (the log lines) appears above it.
type StatusLine struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	line  string
	buf   []byte
}

// NewStatusLine returns a status line on the terminal w of width columns
// (TerminalWidth).
func NewStatusLine(w io.Writer, width int) *StatusLine {
	return &StatusLine{w: w, width: width}
}

// clearLine returns the cursor to the line's start and erases the line.
const clearLine = "\r\x1b[K"

// fit cuts line to one row of width columns (less one, so that the cursor
// stays on the row): a wrapped line could not be redrawn in place.
func fit(line string, width int) string {
	if width <= 1 {
		return ""
	}
	if r := []rune(line); len(r) > width-1 {
		return string(r[:width-1])
	}
	return line
}

// Set replaces the status line.
func (s *StatusLine) Set(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.line = fit(line, s.width)
	s.buf = append(append(s.buf[:0], clearLine...), s.line...)
	s.w.Write(s.buf)
}

// Write writes p above the status line.
func (s *StatusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line == "" {
		return s.w.Write(p)
	}
	s.buf = append(append(append(s.buf[:0], clearLine...), p...), s.line...)
	if _, err := s.w.Write(s.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Done erases the status line: the summary follows as a log line.
func (s *StatusLine) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.line != "" {
		io.WriteString(s.w, clearLine)
		s.line = ""
	}
}
