package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// pyFloat prints f as Python prints a float of this size: the shortest
// representation, with ".0" for whole numbers (50.0, 33.33).
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}

// TimeRange formats the report's time range.
func (r *Report) TimeRange() string {
	if r.Start == nil {
		return "no records"
	}
	const f = "2006-01-02 15:04:05 MST"
	return r.Start.Format(f) + " to " + r.End.Format(f) + " (" + r.End.Sub(*r.Start).Round(time.Second).String() + ")"
}

// SourceOrNone is Source, or "no records".
func (r *Report) SourceOrNone() string {
	if r.Source == "" {
		return "no records"
	}
	return r.Source
}

// WriteText writes a summary as text: the input, the totals, per category
// the original's top-ports lines, the fingerprints and the contact types
// with aggregate-ct's checks. The numbers are those of the JSON and HTML.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	t := r.Totals
	tags := strings.Join(r.Tags, ",")
	if tags == "" {
		tags = "-"
	}
	fmt.Fprintf(bw, "spoki report: tag %s, %s\n", tags, r.TimeRange())
	fmt.Fprintf(bw, "input: %d files, %d lines, %d records (%s), %d parse errors\n", t.Files, t.Lines, t.Records, r.SourceOrNone(), t.ParseErrors)
	fmt.Fprintf(bw, "syns: %d, irregular %d (%s%%), sources %d, /24s %d%s\n", t.SYNs, t.Irregular, pyFloat(t.IrregularShare),
		t.Sources, t.Networks, map[bool]string{true: " (estimated)"}[t.Estimated])
	for _, p := range r.Ports {
		fmt.Fprintf(bw, "\n# %s (%s)\n", p.Title, p.Class)
		if p.ExcludedScanners > 0 {
			fmt.Fprintf(bw, "excluded scanners: %d (%s)\n", p.ExcludedScanners, scannerList(p.ByScanner))
		}
		fmt.Fprintf(bw, "total: %d\n", p.Total)
		fmt.Fprintln(bw, "port, count, share%")
		for _, pc := range p.Top {
			fmt.Fprintf(bw, "%d, %d, %s%%\n", pc.Port, pc.Count, pyFloat(pc.Share))
		}
		fmt.Fprintf(bw, "number of ports targeted: %d\n", p.PortsTargeted)
	}
	fmt.Fprintf(bw, "\n# scanner fingerprints\n")
	for _, s := range r.Scanners {
		fmt.Fprintf(bw, "%s: %d (%s%%)\n", s.Name, s.SYNs, pyFloat(s.Share))
	}
	c := r.TwoPhase.Contact
	fmt.Fprintf(bw, "\n# contact types (two-phase events)\n")
	fmt.Fprintf(bw, "check with-payload == ascii+hex+downloader: %v\n", c.WithPayload == c.ASCII+c.Hex+c.Downloader)
	fmt.Fprintf(bw, "check all == without-ack+without-payload+with-payload: %v\n", c.All == c.WithoutAck+c.WithoutPayload+c.WithPayload)
	for _, nc := range c.Rows() {
		fmt.Fprintf(bw, "%s: %d (%s%%)\n", nc.Name, nc.Count, pyFloat(share(nc.Count, c.All)))
	}
	tp := r.TwoPhase
	fmt.Fprintf(bw, "\n# delay between the two phases\n%d delays, median <= %ss, p90 <= %ss\n", tp.Delays, fmtSec(tp.MedianS), fmtSec(tp.P90S))
	return bw.Flush()
}

// fmtSec formats a bin edge in seconds with 3 significant digits.
func fmtSec(s float64) string { return strconv.FormatFloat(s, 'g', 3, 64) }

// scannerList formats the per-scanner counts, largest first.
func scannerList(m map[string]int) string {
	var parts []NamedCount
	for k, v := range m {
		parts = append(parts, NamedCount{k, v})
	}
	sortNamed(parts)
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = p.Name + " " + strconv.Itoa(p.Count)
	}
	return strings.Join(s, ", ")
}

// sortNamed sorts by count descending, then name.
func sortNamed(p []NamedCount) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && (p[j].Count > p[j-1].Count || p[j].Count == p[j-1].Count && p[j].Name < p[j-1].Name); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}
