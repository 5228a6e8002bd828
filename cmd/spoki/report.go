package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spoki-telescope/spoki/analysis/report"
)

const reportUsage = `usage: spoki report [--html FILE] [--known-scanners DIR] [--raw DIR] [--top 25]
                    [--phase-timeout 600s] INPUT...

Summarises assemble output (TAG-events-*.json.gz) or spoki's event log
(TAG.events.*.jsonl[.gz]), INPUT being files or directories: the top ports
of the regular, irregular and two-phase sequences with known scanners set
apart (DIR/ips.NAME.txt lists plus the built-in prefixes), the contact
types of the two-phase events and the delay between their phases. It prints
a text table and, with --html, writes a self-contained page with the same
numbers as charts.`

// reportMain is `spoki report`.
func reportMain(ctx context.Context, args []string) error {
	fs := newFlagSet("report", reportUsage)
	htmlOut := fs.String("html", "", "write the HTML page to `FILE`")
	known := fs.String("known-scanners", "known-scanners", "`DIR` of ips.NAME.txt lists (missing: built-in prefixes only)")
	raw := fs.String("raw", "", "raw-log `DIR`, for two-phase ACKs whose payload is in the raw log only")
	top := fs.Int("top", report.DefaultTopN, "ports listed per category")
	phase := fs.Duration("phase-timeout", report.DefaultPhaseTimeout, "largest delay paired into a two-phase event (event log only)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("report", "report: want at least one INPUT")
	}
	if *top <= 0 || *phase <= 0 {
		return usagef("report", "report: --top and --phase-timeout must be positive")
	}
	r, err := report.Build(ctx, report.Config{KnownScanners: *known, RawDir: *raw, TopN: *top, PhaseTimeout: *phase}, pos)
	if err != nil {
		return err
	}
	if err := r.WriteText(os.Stdout); err != nil {
		return fmt.Errorf("report: write: %w", err)
	}
	if *htmlOut == "" {
		return nil
	}
	// Written beside the target and renamed, so that a browser reloading
	// the page never sees half of it.
	tmp, err := os.CreateTemp(filepath.Dir(*htmlOut), ".report-*.html")
	if err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := errors.Join(r.WriteHTML(tmp), tmp.Chmod(0o644), tmp.Close()); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	if err := os.Rename(tmp.Name(), *htmlOut); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}
