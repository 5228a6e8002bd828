package report

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
)

// pageStyle is the page's only style sheet. The page's Content Security
// Policy allows it by its hash and nothing else: no script, no other
// style, no image, font or connection.
const pageStyle = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin: 1.8em 0 0.3em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1em 0 0.2em; }
.note { color: #666; margin: 0.2em 0 0.6em; }
table { border-collapse: collapse; margin: 0.3em 0 1em; }
th, td { padding: 0.15em 0.7em 0.15em 0; text-align: left; vertical-align: middle; }
th { font-weight: 600; border-bottom: 1px solid #ccc; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.k { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; max-width: 36em; }
dl.totals { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1.2em; }
dl.totals dt { color: #555; } dl.totals dd { margin: 0; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 0 2.5em; }
svg.bar rect { fill: #3b6ea5; }
svg.chart { display: block; margin: 0.3em 0 0.8em; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #333; }
svg.chart text.title { font-size: 13px; font-weight: 600; }
svg.chart line.axis { stroke: #333; stroke-width: 1; }
svg.chart line.grid { stroke: #e4e4e4; stroke-width: 1; }
svg.chart polyline { fill: none; stroke: #3b6ea5; stroke-width: 1.8; }
svg.chart circle { fill: #3b6ea5; }
svg.chart.share polyline { stroke: #b5523b; } svg.chart.share circle { fill: #b5523b; }
svg.chart.cdf polyline { stroke: #3b8a4f; } svg.chart.cdf circle { fill: #3b8a4f; }
`

// csp is the page's Content Security Policy.
var csp = func() string {
	sum := sha256.Sum256([]byte(pageStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'none'"
}()

// pageData is what the template renders: the report and its charts.
type pageData struct {
	R                          *Report
	CSP                        string
	Style                      template.CSS
	SYNs, Sources, Nets, Share *lineChart
	CDF                        *lineChart
}

// WriteHTML writes the report as a self-contained page: tables and inline
// SVG charts drawn here, one style sheet allowed by its hash, no script;
// nothing is loaded from anywhere. Every section has an id and every total
// a data-key, so that a test can read the numbers back from the DOM.
func (r *Report) WriteHTML(w io.Writer) error {
	d := pageData{R: r, CSP: csp, Style: template.CSS(pageStyle),
		SYNs:    hourChart("chart-syns", "SYNs per hour", "SYNs", r.Hours, func(h Hour) float64 { return float64(h.SYNs) }, false),
		Sources: hourChart("chart-sources", "Sources per hour", "sources", r.Hours, func(h Hour) float64 { return float64(h.Sources) }, false),
		Nets:    hourChart("chart-networks", "/24s per hour", "/24s", r.Hours, func(h Hour) float64 { return float64(h.Networks) }, false),
		Share:   hourChart("chart-irregular", "Irregular share of the SYNs per hour", "irregular", r.Hours, func(h Hour) float64 { return h.IrregularShare }, true),
		CDF:     cdfChart(r.TwoPhase),
	}
	if err := pageTemplate.Execute(w, d); err != nil {
		return fmt.Errorf("report: write html: %w", err)
	}
	return nil
}

// barWidth scales n of max to at most 160 pixels (at least 1 for n > 0).
func barWidth(n, max int) int {
	if n <= 0 || max <= 0 {
		return 0
	}
	return int(max64(1, float64(n)*160/float64(max)))
}

func max64(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

func topMax(l TopList) int {
	if len(l.Items) == 0 {
		return 0
	}
	return l.Items[0].Count
}

func portMax(p PortClass) int {
	if len(p.Top) == 0 {
		return 0
	}
	return p.Top[0].Count
}

func scannerMax(s []ScannerCount) int {
	m := 0
	for _, x := range s {
		m = max(m, x.SYNs)
	}
	return m
}

// humanBytes formats a size in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

var funcs = template.FuncMap{
	"bar": barWidth, "topMax": topMax, "portMax": portMax, "scannerMax": scannerMax,
	"pct": pyFloat, "sec": fmtSec, "bytes": humanBytes,
	"share": func(n, total int) string { return pyFloat(share(n, total)) },
	"cred": func(k string) []string {
		u, p, _ := strings.Cut(k, "\t")
		return []string{u, p}
	},
	"join": strings.Join,
	"list": func(a ...any) []any { return a },
}

var pageTemplate = template.Must(template.New("page").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spoki report{{with .R.Tags}}: {{join . ", "}}{{end}}</title>
<style>{{.Style}}</style>
</head>
<body>
{{- $r := .R}}
<h1>spoki report{{with $r.Tags}}: {{join . ", "}}{{end}}</h1>
<section id="summary">
<p class="note">{{$r.TimeRange}} · {{$r.SourceOrNone}}</p>
<dl class="totals" id="totals">
<dt>tag</dt><dd data-key="tags">{{join $r.Tags ", "}}</dd>
<dt>time range</dt><dd data-key="range">{{$r.TimeRange}}</dd>
<dt>SYNs</dt><dd data-key="syns">{{$r.Totals.SYNs}}</dd>
<dt>irregular SYNs</dt><dd><span data-key="irregular">{{$r.Totals.Irregular}}</span> ({{pct $r.Totals.IrregularShare}}%)</dd>
<dt>sources</dt><dd><span data-key="sources">{{$r.Totals.Sources}}</span>{{if $r.Totals.Estimated}} (estimated){{end}}</dd>
<dt>/24s (IPv6: /48s)</dt><dd data-key="networks">{{$r.Totals.Networks}}</dd>
<dt>connections</dt><dd data-key="sessions">{{$r.Totals.Sessions}}</dd>
<dt>two-phase events</dt><dd data-key="two_phase">{{$r.TwoPhase.Events}}</dd>
<dt>records read</dt><dd data-key="records">{{$r.Totals.Records}}</dd>
<dt>parse errors</dt><dd data-key="parse_errors">{{$r.Totals.ParseErrors}}</dd>
</dl>
<h3>Inputs</h3>
<table id="inputs"><tr><th>file</th><th class="n">size</th><th class="n">lines</th><th class="n">records</th><th class="n">parse errors</th></tr>
{{- range $r.Inputs}}
<tr><td class="k">{{.Path}}</td><td class="n">{{bytes .Bytes}}</td><td class="n">{{.Lines}}</td><td class="n">{{.Records}}</td><td class="n">{{.ParseErrors}}{{if .ReadError}} (read error){{end}}</td></tr>
{{- end}}
</table>
</section>

<section id="hourly">
<h2>SYNs, sources and /24s per hour</h2>
{{template "chart" .SYNs}}{{template "chart" .Sources}}{{template "chart" .Nets}}
</section>

<section id="irregular">
<h2>Irregular share over time</h2>
<p class="note">Irregular: IP ID 54321, TTL above 200 or no TCP options (the paper's rule).</p>
{{template "chart" .Share}}
</section>

<section id="scanners">
<h2>Scanner fingerprints</h2>
<table><tr><th>fingerprint</th><th class="n">SYNs</th><th class="n">share</th><th class="n">irregular</th><th class="n">sources</th><th></th></tr>
{{- $m := scannerMax $r.Scanners}}
{{- range $r.Scanners}}
<tr data-scanner="{{.Name}}"><td>{{.Name}}</td><td class="n">{{.SYNs}}</td><td class="n">{{pct .Share}}%</td><td class="n">{{.Irregular}}</td><td class="n">{{.Sources}}{{if .Estimated}}~{{end}}</td><td>{{template "bar" (bar .SYNs $m)}}</td></tr>
{{- end}}
</table>
</section>

<section id="ports">
<h2>Top ports per class</h2>
<p class="note">Known research scanners are left out and counted apart.</p>
<div class="grid">
{{- range $r.Ports}}
<div id="ports-{{.Class}}">
<h3>{{.Title}} ({{.Class}})</h3>
<p class="note">total {{.Total}}, {{.PortsTargeted}} ports targeted{{if .ExcludedScanners}}, excluded scanners {{.ExcludedScanners}}{{end}}</p>
<table><tr><th class="n">port</th><th class="n">count</th><th class="n">share</th><th></th></tr>
{{- $m := portMax .}}
{{- range .Top}}
<tr><td class="n">{{.Port}}</td><td class="n">{{.Count}}</td><td class="n">{{pct .Share}}%</td><td>{{template "bar" (bar .Count $m)}}</td></tr>
{{- end}}
</table>
</div>
{{- end}}
</div>
</section>

<section id="delay">
<h2>Delay between the two phases</h2>
<p class="note">{{$r.TwoPhase.Delays}} two-phase events; median ≤ {{sec $r.TwoPhase.MedianS}} s, 90% ≤ {{sec $r.TwoPhase.P90S}} s (bins of a tenth of a decade){{if $r.TwoPhase.OverMaxS}}; {{$r.TwoPhase.OverMaxS}} above 10^6 s{{end}}.</p>
{{template "chart" .CDF}}
</section>

<section id="contact-types">
<h2>Contact types of the two-phase events</h2>
{{- with $r.TwoPhase.Contact}}
<table><tr><th>contact type</th><th class="n">events</th><th class="n">share</th><th></th></tr>
{{- $all := .All}}
{{- range .Rows}}
<tr data-contact="{{.Name}}"><td>{{.Name}}</td><td class="n">{{.Count}}</td><td class="n">{{share .Count $all}}%</td><td>{{template "bar" (bar .Count $all)}}</td></tr>
{{- end}}
</table>
{{- end}}
</section>

<section id="payload-prefixes">
<h2>Top payload prefixes</h2>
<p class="note">The first {{$r.Limits.PrefixBytes}} bytes; non-printable bytes as \xNN.</p>
<div class="grid">
<div>{{template "top" (list "of the two-phase events" "prefix" $r.TwoPhasePrefixes)}}</div>
<div>{{template "top" (list "of all connections" "prefix" $r.PayloadPrefixes)}}</div>
</div>
</section>

<section id="downloaders">
<h2>Downloaders</h2>
<div class="grid">
<div>{{template "top" (list "hosts" "host" $r.DownloaderHosts)}}</div>
<div>{{template "top" (list "file names" "file" $r.DownloaderFiles)}}</div>
</div>
</section>

<section id="credentials">
<h2>Credentials</h2>
<p class="note">Login attempts seen by the telnet, MQTT and TDS handlers.</p>
<table><tr><th>username</th><th>password</th><th class="n">count</th><th></th></tr>
{{- $m := topMax $r.Credentials}}
{{- range $r.Credentials.Items}}{{$c := cred .Key}}
<tr><td class="k">{{index $c 0}}</td><td class="k">{{index $c 1}}</td><td class="n">{{.Count}}</td><td>{{template "bar" (bar .Count $m)}}</td></tr>
{{- else}}
<tr><td colspan="4" class="note">none</td></tr>
{{- end}}
</table>
{{template "listnote" $r.Credentials}}
</section>

<section id="fingerprints">
<h2>TLS and SSH client fingerprints</h2>
<div class="grid">
<div id="ja4">{{template "top" (list "JA4" "JA4" $r.JA4)}}</div>
<div id="hassh">{{template "top" (list "HASSH" "HASSH" $r.HASSH)}}</div>
</div>
</section>

<section id="limits">
<h2>Bounds</h2>
<p class="note">Each top list holds at most {{$r.Limits.TopKeys}} keys of at most {{$r.Limits.MaxKeyBytes}} bytes (Space-Saving: a count may exceed the true one by at most its overcount once keys were evicted); distinct counts are exact up to {{$r.Limits.ExactDistinct}} ({{$r.Limits.ExactDistinctHour}} per hour), then HyperLogLog estimates ({{$r.Limits.HLLRegisters}} registers); the time series holds at most {{$r.Limits.MaxHours}} hours.
Cut: <span data-key="cut_hours">{{$r.Cut.HoursSYNs}}</span> SYNs past the hours, <span data-key="cut_keys">{{$r.Cut.TopKeys}}</span> top-list keys evicted, <span data-key="cut_acks">{{$r.Cut.RawAcks}}</span> raw-log ACKs.</p>
</section>
</body>
</html>
{{define "bar"}}<svg class="bar" width="160" height="10"><rect x="0" y="0" width="{{.}}" height="10"></rect></svg>{{end}}
{{define "chart"}}<svg class="{{.Class}}" id="{{.ID}}" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
<text class="title" x="{{.X0}}" y="10">{{.Title}}</text>
{{- $c := .}}
{{- range .YTicks}}
<line class="grid" x1="{{$c.X0}}" x2="{{$c.X1}}" y1="{{.Pos}}" y2="{{.Pos}}"></line><text x="{{$c.X0}}" dx="-6" y="{{.Pos}}" dy="4" text-anchor="end">{{.Label}}</text>
{{- end}}
{{- range .XTicks}}
<line class="axis" x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$c.Y1}}" y2="{{$c.TickEnd}}"></line><text x="{{.Pos}}" y="{{$c.Y1}}" dy="15" text-anchor="middle">{{.Label}}</text>
{{- end}}
<line class="axis" x1="{{.X0}}" x2="{{.X1}}" y1="{{.Y1}}" y2="{{.Y1}}"></line>
<line class="axis" x1="{{.X0}}" x2="{{.X0}}" y1="{{.Y0}}" y2="{{.Y1}}"></line>
<text x="{{.X1}}" y="{{.H}}" dy="-4" text-anchor="end">{{.XLabel}}</text>
<text transform="rotate(-90)" x="-{{.Y0}}" y="12" text-anchor="end">{{.YLabel}}</text>
{{- if .Empty}}<text x="{{.X0}}" dx="10" y="{{.Y0}}" dy="30">no data</text>{{end}}
{{- if .Points}}
<polyline points="{{.Points}}"></polyline>
{{- end}}
{{- range .Dots}}
<circle cx="{{.X}}" cy="{{.Y}}" r="2.5"><title>{{.Title}}</title></circle>
{{- end}}
</svg>{{end}}
{{define "top"}}{{$title := index . 0}}{{$col := index . 1}}{{$l := index . 2}}
<h3>{{$title}}</h3>
<table><tr><th>{{$col}}</th><th class="n">count</th><th></th></tr>
{{- $m := topMax $l}}
{{- range $l.Items}}
<tr><td class="k">{{.Key}}</td><td class="n">{{.Count}}</td><td>{{template "bar" (bar .Count $m)}}</td></tr>
{{- else}}
<tr><td colspan="3" class="note">none</td></tr>
{{- end}}
</table>
{{template "listnote" $l}}{{end}}
{{define "listnote"}}<p class="note">{{.Total}} seen, {{.Held}} distinct{{if .Evicted}} held, {{.Evicted}} evicted{{end}}.</p>{{end}}
`))
