package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spoki-telescope/spoki/analysis/report"
)

const reportUsage = `usage: spoki report [--html FILE] [--json FILE|-] [--known-scanners DIR] [--raw DIR]
                    [--top 25] [--top-keys 1000] [--max-hours 1488] INPUT...

Summarises spoki's event log (TAG.events.*.jsonl[.gz]) or assemble output
(TAG-events-*.json.gz), INPUT being files or directories: tag, time range
and inputs; SYNs, sources and /24s per hour and the irregular share;
scanner fingerprints; the top ports of the regular, irregular and
two-phase sequences with known scanners set apart (DIR/ips.NAME.txt lists
plus the built-in prefixes); the delay between the two phases as a CDF and
their contact types; top payload prefixes, downloader hosts and file
names, credentials, JA4 and HASSH. It prints a text summary; --html writes
a self-contained page, --json the same numbers as JSON ("-": stdout,
instead of the text). Memory is bounded whatever the input (see --top-keys
and --max-hours); what the bounds cut is counted in the output.`

// reportMain is `spoki report`.
func reportMain(ctx context.Context, args []string) error {
	fs := newFlagSet("report", reportUsage)
	htmlOut := fs.String("html", "", "write the HTML page to `FILE`")
	jsonOut := fs.String("json", "", "write the report as JSON to `FILE` (- for standard output)")
	known := fs.String("known-scanners", "known-scanners", "`DIR` of ips.NAME.txt lists (missing: built-in prefixes only)")
	raw := fs.String("raw", "", "raw-log `DIR`, for two-phase ACKs whose payload is in the raw log only")
	top := fs.Int("top", report.DefaultTopN, "rows shown per top list")
	topKeys := fs.Int("top-keys", report.DefaultTopKeys, "distinct keys held per top list (payload prefixes, hosts, credentials, ...)")
	maxHours := fs.Int("max-hours", report.DefaultMaxHours, "hours held in the time series")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("report", "report: want at least one INPUT")
	}
	if *top <= 0 || *topKeys < *top || *maxHours <= 0 {
		return usagef("report", "report: --top and --max-hours must be positive, --top-keys at least --top")
	}
	r, err := report.Build(ctx, report.Config{KnownScanners: *known, RawDir: *raw, TopN: *top, TopKeys: *topKeys, MaxHours: *maxHours}, pos)
	if err != nil {
		return err
	}
	if *jsonOut != "-" {
		if err := r.WriteText(os.Stdout); err != nil {
			return fmt.Errorf("report: write: %w", err)
		}
	}
	switch *jsonOut {
	case "":
	case "-":
		if err := r.WriteJSON(os.Stdout); err != nil {
			return err
		}
	default:
		if err := writeAtomic(*jsonOut, r.WriteJSON); err != nil {
			return fmt.Errorf("report: json: %w", err)
		}
	}
	if *htmlOut != "" {
		if err := writeAtomic(*htmlOut, r.WriteHTML); err != nil {
			return fmt.Errorf("report: html: %w", err)
		}
	}
	return nil
}

// writeAtomic writes a file beside the target and renames it, so that a
// browser reloading the page never sees half of it.
func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".report-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := errors.Join(write(tmp), tmp.Chmod(0o644), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
