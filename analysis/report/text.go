package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// share is round(n*100/total, 2), 0 for an empty total.
func share(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(float64(n)*100/float64(total)*100) / 100
}

// pyFloat prints f as Python prints a float of this size: the shortest
// representation, with ".0" for whole numbers (50.0, 33.33).
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}

// WriteText writes the report as text: per category the original's report
// lines, then the contact types with aggregate-ct's checks and shares, then
// the delay histogram. The numbers are those of the HTML page.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "spoki report: %d files, %d records (%s), %d errors\n", r.Files, r.Records, r.sourceOrNone(), r.Errors)
	for _, cat := range Categories {
		p := r.Ports[cat]
		fmt.Fprintf(bw, "\n# %s (%s)\n", categoryTitles[cat], cat)
		if p.KnownScanners > 0 {
			fmt.Fprintf(bw, "excluded scanners: %d (%s)\n", p.KnownScanners, scannerList(p.ByScanner))
		}
		fmt.Fprintf(bw, "total: %d\n", p.Total)
		fmt.Fprintln(bw, "port, count, share%")
		for _, pc := range p.Top(r.TopN) {
			fmt.Fprintf(bw, "%d, %d, %s%%\n", pc.Port, pc.Count, pyFloat(pc.Share))
		}
		fmt.Fprintf(bw, "number of ports targeted: %d\n", len(p.Order))
	}
	c := r.Contact
	fmt.Fprintf(bw, "\n# contact types (two-phase events)\n")
	fmt.Fprintf(bw, "check with-payload == ascii+hex+downloader: %v\n", c.WithPayload == c.ASCII+c.Hex+c.Downloader)
	fmt.Fprintf(bw, "check all == without-ack+without-payload+with-payload: %v\n", c.All == c.WithoutAck+c.WithoutPayload+c.WithPayload)
	for _, nc := range c.Rows() {
		fmt.Fprintf(bw, "%s: %d (%s%%)\n", nc.Name, nc.Count, pyFloat(share(nc.Count, c.All)))
	}
	fmt.Fprintf(bw, "\n# delay between the two phases (seconds)\n")
	for i, label := range DelayBins() {
		fmt.Fprintf(bw, "%s: %d\n", label, r.Delays[i])
	}
	return bw.Flush()
}

func (r *Report) sourceOrNone() string {
	if r.Source == "" {
		return "no records"
	}
	return r.Source
}

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
