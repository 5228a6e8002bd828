package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
)

// chart is one bar chart of the page: labels, counts, and the text shown
// beside each bar (formatted in Go so that it is the text table's).
type chart struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	Note  string   `json:"note"`
	Bars  []bar    `json:"bars"`
	Extra []string `json:"extra,omitempty"`
}

type bar struct {
	Label string `json:"label"`
	Value int    `json:"value"`
	Text  string `json:"text"`
}

// charts returns the page's charts in order: the top ports of each
// category, the contact types, the delay histogram.
func (r *Report) charts() []chart {
	var out []chart
	for _, cat := range Categories {
		p := r.Ports[cat]
		c := chart{ID: "ports-" + cat, Title: "Top ports: " + categoryTitles[cat] + " (" + cat + ")",
			Note: fmt.Sprintf("total %d, %d ports targeted", p.Total, len(p.Order))}
		if p.KnownScanners > 0 {
			c.Note += fmt.Sprintf(", excluded scanners %d (%s)", p.KnownScanners, scannerList(p.ByScanner))
		}
		for _, pc := range p.Top(r.TopN) {
			c.Bars = append(c.Bars, bar{strconv.Itoa(pc.Port), pc.Count, strconv.Itoa(pc.Count) + " (" + pyFloat(pc.Share) + "%)"})
		}
		out = append(out, c)
	}
	ct := chart{ID: "contact-types", Title: "Contact types of the two-phase events"}
	for _, nc := range r.Contact.Rows() {
		ct.Bars = append(ct.Bars, bar{nc.Name, nc.Count, strconv.Itoa(nc.Count) + " (" + pyFloat(share(nc.Count, r.Contact.All)) + "%)"})
	}
	out = append(out, ct)
	dl := chart{ID: "delay", Title: "Delay between the two phases (seconds)", Note: "histogram"}
	for i, label := range DelayBins() {
		dl.Bars = append(dl.Bars, bar{label, r.Delays[i], strconv.Itoa(r.Delays[i])})
	}
	return append(out, dl)
}

// pageData is the JSON embedded in the page.
type pageData struct {
	Summary string  `json:"summary"`
	Charts  []chart `json:"charts"`
}

// WriteHTML writes a self-contained page: the data as JSON in a script
// element, and a script that draws each chart as inline SVG. Nothing is
// loaded from anywhere (no fonts, scripts, styles or images).
func (r *Report) WriteHTML(w io.Writer) error {
	data, err := json.Marshal(pageData{
		Summary: fmt.Sprintf("%d files, %d records (%s), %d errors", r.Files, r.Records, r.sourceOrNone(), r.Errors),
		Charts:  r.charts(),
	})
	if err != nil {
		return fmt.Errorf("report: html data: %w", err)
	}
	// json.Marshal escapes <, > and &, so the JSON cannot end the script
	// element early.
	if err := pageTemplate.Execute(w, template.JS(data)); err != nil {
		return fmt.Errorf("report: write html: %w", err)
	}
	return nil
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>spoki report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 1.6em 0 0.2em; }
.note { color: #666; margin: 0 0 0.4em; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg rect.bar { fill: #3b6ea5; }
svg text.value { fill: #444; }
</style>
</head>
<body>
<h1>spoki report</h1>
<p id="summary" class="note"></p>
<div id="charts"><noscript>The charts need JavaScript.</noscript></div>
<script type="application/json" id="report-data">{{.}}</script>
<script>
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  document.getElementById("summary").textContent = data.summary;
  const root = document.getElementById("charts");
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  for (const c of data.charts) {
    const sec = document.createElement("section");
    sec.id = c.id;
    const h = document.createElement("h2");
    h.textContent = c.title;
    sec.appendChild(h);
    if (c.note) {
      const p = document.createElement("p");
      p.className = "note";
      p.textContent = c.note;
      sec.appendChild(p);
    }
    const bars = c.bars || [];
    const rowH = 20, labelW = 130, barW = 420, textW = 160;
    const svg = el("svg", {width: labelW + barW + textW, height: Math.max(1, bars.length) * rowH + 4,
      role: "img", "aria-label": c.title, "data-chart": c.id});
    const maxV = Math.max(1, ...bars.map(b => b.value));
    bars.forEach((b, i) => {
      const y = i * rowH + 2;
      const g = el("g", {"class": "bar-row", "data-chart": c.id, "data-label": b.label, "data-value": String(b.value)});
      g.appendChild(el("text", {"class": "label", x: labelW - 6, y: y + 14, "text-anchor": "end"}, b.label));
      const w = b.value > 0 ? Math.max(1, Math.round(barW * b.value / maxV)) : 0;
      g.appendChild(el("rect", {"class": "bar", x: labelW, y: y + 2, width: w, height: rowH - 5}));
      g.appendChild(el("text", {"class": "value", x: labelW + w + 6, y: y + 14}, b.text));
      svg.appendChild(g);
    });
    if (bars.length === 0) svg.appendChild(el("text", {x: 4, y: 14}, "no data"));
    sec.appendChild(svg);
    root.appendChild(sec);
  }
  document.body.setAttribute("data-rendered", String(data.charts.length));
})();
</script>
</body>
</html>
`))
