package download

// The input: spoki's event log (TAG.events.YYYYMMDD-HH.jsonl[.gz]) and the
// assemble output (TAG-events-YYYYMMDD-HHMMSS.json.gz), told apart per line.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/records"
)

// maxLineBytes caps one input line; longer lines are counted and skipped.
const maxLineBytes = 16 << 20

// DefaultMaxURLsPerPayload caps the URLs taken from one payload: a
// multi-architecture dropper names about a dozen, while a 4 KiB payload
// can carry about 90.
const DefaultMaxURLsPerPayload = 16

// ScanConfig holds the settings of Scan. Zero values mean the defaults.
type ScanConfig struct {
	// MaxURLsPerPayload caps the distinct URLs taken from one payload
	// (default DefaultMaxURLsPerPayload); the rest are counted in
	// ScanStats.CutURLs.
	MaxURLsPerPayload int
}

// ScanStats counts what Scan read.
type ScanStats struct {
	// Files is the number of input files opened.
	Files int
	// Lines is the number of lines read.
	Lines int
	// BadLines counts lines that are not JSON objects or are too long;
	// they are skipped.
	BadLines int
	// BadFiles counts files whose reading ended early on an error (e.g. a
	// truncated gzip of a file still being written); what was read counts.
	BadFiles int
	// Payloads counts the payloads handed to urls.Extract.
	Payloads int
	// URLs counts the Targets produced.
	URLs int
	// CutURLs counts the URLs dropped for ScanConfig.MaxURLsPerPayload.
	CutURLs int
}

// IsInputName says whether a directory entry is read by Scan: event logs
// (*.jsonl, *.jsonl.gz) and assemble output (*.json, *.json.gz).
func IsInputName(name string) bool {
	name = strings.TrimSuffix(name, ".gz")
	return strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".json")
}

// ExpandInputs replaces each directory in paths by its input files (not
// recursively), sorted by name; files are kept as given.
func ExpandInputs(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
		var names []string
		for _, e := range ents {
			if e.Type().IsRegular() && IsInputName(e.Name()) {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		slices.Sort(names)
		out = append(out, names...)
	}
	return out, nil
}

// OpenInput opens a file, decompressing it when it starts with the gzip
// magic (names are not trusted: rotation may compress a file later).
func OpenInput(path string) (io.ReadCloser, error) { return records.OpenLogSniffed(path) }

// ForEachLine calls fn with every line (without its line end) of the
// input files; lines longer than maxLineBytes are counted as bad and
// skipped. A file that cannot be opened stops the scan; a read error ends
// that file only (counted in BadFiles).
func ForEachLine(ctx context.Context, files []string, st *ScanStats, fn func(line []byte) error) error {
	for _, path := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := OpenInput(path)
		if err != nil {
			return fmt.Errorf("download: open input: %w", err)
		}
		st.Files++
		err = eachLine(rc, st, fn)
		rc.Close()
		var ce callbackError
		if errors.As(err, &ce) {
			return ce.err
		}
		if err != nil {
			st.BadFiles++
		}
	}
	return nil
}

// callbackError carries fn's error through eachLine, to tell it from a
// read error.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func eachLine(r io.Reader, st *ScanStats, fn func([]byte) error) error {
	long := func(int) error {
		st.Lines++
		st.BadLines++
		return nil
	}
	return records.ReadLines(r, records.LineOptions{Max: maxLineBytes, Long: long}, func(_ int, line []byte) error {
		st.Lines++
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			if ferr := fn(line); ferr != nil {
				return callbackError{ferr}
			}
		}
		return nil
	})
}

// inputLine holds the fields of both input formats that Scan uses.
type inputLine struct {
	// Event log.
	EventType string `json:"event_type"`
	Timestamp string `json:"timestamp"`
	SrcIP     string `json:"src_ip"`
	SrcPort   int    `json:"src_port"`
	DestIP    string `json:"dest_ip"`
	DestPort  int    `json:"dest_port"`
	Payload   string `json:"payload"`
	// Assemble record.
	Tag  string `json:"tag"`
	Rack *slot  `json:"rack"`
	Iack *slot  `json:"iack"`
}

// slot is an assemble record slot; only the trigger is read.
type slot struct {
	Trigger struct {
		Timestamp int64  `json:"timestamp"`
		Saddr     string `json:"saddr"`
		Daddr     string `json:"daddr"`
		Proto     string `json:"proto"`
		Payload   struct {
			Sport   int    `json:"sport"`
			Dport   int    `json:"dport"`
			Payload string `json:"payload"`
		} `json:"payload"`
	} `json:"trigger"`
}

// Scan reads the inputs (files or directories, see ExpandInputs) and calls
// fn with every downloader URL found, in input order; a URL found twice in
// one event is passed once. fn's error stops the scan.
func Scan(ctx context.Context, paths []string, cfg ScanConfig, st *ScanStats, fn func(Target) error) error {
	files, err := ExpandInputs(paths)
	if err != nil {
		return err
	}
	return ForEachLine(ctx, files, st, func(line []byte) error {
		var in inputLine
		if err := json.Unmarshal(line, &in); err != nil {
			st.BadLines++
			return nil
		}
		for _, t := range targets(&in, st, cfg.MaxURLsPerPayload) {
			st.URLs++
			if err := fn(t); err != nil {
				return err
			}
		}
		return nil
	})
}

// targets extracts the Targets of one line, at most maxURLs per payload.
func targets(in *inputLine, st *ScanStats, maxURLs int) []Target {
	if maxURLs <= 0 {
		maxURLs = DefaultMaxURLsPerPayload
	}
	if in.EventType != "" {
		if in.Payload == "" {
			return nil
		}
		p, err := base64.StdEncoding.DecodeString(in.Payload)
		if err != nil || len(p) == 0 {
			return nil
		}
		st.Payloads++
		base := Target{Saddr: in.SrcIP, Daddr: in.DestIP, Sport: in.SrcPort, Dport: in.DestPort, Tag: in.EventType}
		if ts, err := records.ParseTimestamp(in.Timestamp); err == nil {
			base.TS = ts.UnixMilli()
		}
		return expand(base, urls.Extract(p), maxURLs, st)
	}
	if in.Tag == "" {
		return nil
	}
	// As filter: rack first, iack only if rack gives nothing.
	for _, s := range []*slot{in.Rack, in.Iack} {
		if s == nil || s.Trigger.Proto != "tcp" || s.Trigger.Payload.Payload == "" {
			continue
		}
		p, err := hex.DecodeString(s.Trigger.Payload.Payload)
		if err != nil {
			continue
		}
		st.Payloads++
		tr := &s.Trigger
		base := Target{TS: tr.Timestamp, Saddr: tr.Saddr, Daddr: tr.Daddr,
			Sport: tr.Payload.Sport, Dport: tr.Payload.Dport, Tag: in.Tag}
		if ts := expand(base, urls.Extract(p), maxURLs, st); len(ts) > 0 {
			return ts
		}
	}
	return nil
}

// expand makes one Target per distinct URL, at most maxURLs; the cut ones
// are counted.
func expand(base Target, ds []urls.Download, maxURLs int, st *ScanStats) []Target {
	var out []Target
	for _, d := range ds {
		if slices.ContainsFunc(out, func(t Target) bool { return t.URL == d.URL }) {
			continue
		}
		if len(out) >= maxURLs {
			st.CutURLs++
			continue
		}
		t := base
		t.Download = d
		out = append(out, t)
	}
	return out
}
