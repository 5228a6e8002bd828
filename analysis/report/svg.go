package report

// The charts of the HTML page, drawn here as SVG geometry (the template
// only writes it out): line charts with axes, ticks and labels, one on a
// logarithmic x axis. No script is needed to show them.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Chart geometry: the SVG's size and the plot area's margins.
const (
	chartW, chartH                     = 760, 230
	marginL, marginR, marginT, marginB = 64, 44, 16, 44
)

// lineChart is one chart, ready for the template.
type lineChart struct {
	ID, Class, Title, XLabel, YLabel string
	W, H                             int
	// Plot area.
	X0, Y0, X1, Y1 float64
	TickEnd        float64
	XTicks, YTicks []tick
	// Points is the polyline; Dots the data points (with a title each).
	Points string
	Dots   []dot
	Empty  bool
}

type tick struct {
	Pos   float64
	Label string
}

type dot struct {
	X, Y  float64
	Title string
}

func newChart(id, title, xl, yl string) *lineChart {
	return &lineChart{ID: id, Class: "chart", Title: title, XLabel: xl, YLabel: yl, W: chartW, H: chartH,
		X0: marginL, Y0: marginT, X1: chartW - marginR, Y1: chartH - marginB, TickEnd: chartH - marginB + 4}
}

// niceStep returns a step of 1, 2 or 5 × 10^k giving about n intervals
// up to max.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// yAxis sets linear y ticks from 0 to at least max; it returns the top.
func (c *lineChart) yAxis(max float64, integer bool, format func(float64) string) float64 {
	step := niceStep(max, 4)
	if integer && step < 1 {
		step = 1
	}
	top := step * math.Ceil(max/step)
	if top == 0 {
		top = step
	}
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, tick{c.y(v, top), format(v)})
	}
	return top
}

func (c *lineChart) y(v, top float64) float64 { return c.Y1 - (c.Y1-c.Y0)*v/top }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// hourChart draws one series of the time series.
func hourChart(id, title, yl string, hours []Hour, val func(Hour) float64, percent bool) *lineChart {
	c := newChart(id, title, "hour (UTC)", yl)
	if len(hours) == 0 {
		c.Empty = true
		return c
	}
	max := 0.0
	for _, h := range hours {
		max = math.Max(max, val(h))
	}
	format := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	if percent {
		c.Class = "chart share"
		max = math.Max(max, 1)
		format = func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + "%" }
	}
	top := c.yAxis(max, !percent, format)
	t0, t1 := hours[0].Start, hours[len(hours)-1].Start
	span := t1.Sub(t0).Hours()
	x := func(t time.Time) float64 {
		if span == 0 {
			return (c.X0 + c.X1) / 2
		}
		return c.X0 + (c.X1-c.X0)*t.Sub(t0).Hours()/span
	}
	var pts []string
	for _, h := range hours {
		px, py := x(h.Start), c.y(val(h), top)
		pts = append(pts, f1(px)+","+f1(py))
		c.Dots = append(c.Dots, dot{px, py, h.Start.Format("2006-01-02 15:00") + ": " + format(val(h))})
	}
	c.Points = strings.Join(pts, " ")
	step := 1
	for _, s := range []int{1, 2, 3, 6, 12, 24, 48, 168, 336, 720} {
		step = s
		if span/float64(s) <= 6 {
			break
		}
	}
	for k := 0; k <= int(span); k += step {
		t := t0.Add(time.Duration(k) * time.Hour)
		label := t.Format("01-02 15h")
		c.XTicks = append(c.XTicks, tick{x(t), label})
	}
	return c
}

// cdfChart draws the delay CDF on a logarithmic x axis (decades).
func cdfChart(tp TwoPhase) *lineChart {
	c := newChart("delay-cdf", "CDF of the delay between the two phases", "delay (seconds, log scale)", "fraction of events")
	c.Class = "chart cdf"
	if len(tp.DelayCDF) == 0 {
		c.Empty = true
		return c
	}
	lo := math.Floor(math.Log10(tp.DelayCDF[0].DelayS) + 1e-9)
	hi := math.Ceil(math.Log10(tp.DelayCDF[len(tp.DelayCDF)-1].DelayS) - 1e-9)
	if hi <= lo {
		hi = lo + 1
	}
	x := func(s float64) float64 { return c.X0 + (c.X1-c.X0)*(math.Log10(s)-lo)/(hi-lo) }
	for d := lo; d <= hi; d++ {
		c.XTicks = append(c.XTicks, tick{x(math.Pow(10, d)), decadeLabel(d)})
	}
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		c.YTicks = append(c.YTicks, tick{c.y(v, 1), strconv.FormatFloat(v, 'f', -1, 64)})
	}
	// A step function: the CDF is flat between the bin edges.
	pts := []string{f1(c.X0) + "," + f1(c.y(0, 1))}
	prev := 0.0
	for _, p := range tp.DelayCDF {
		px := x(p.DelayS)
		if p.Fraction == prev {
			continue // no delay in this bin
		}
		pts = append(pts, f1(px)+","+f1(c.y(prev, 1)), f1(px)+","+f1(c.y(p.Fraction, 1)))
		c.Dots = append(c.Dots, dot{px, c.y(p.Fraction, 1), fmt.Sprintf("≤ %ss: %d (%.3f)", fmtSec(p.DelayS), p.Count, p.Fraction)})
		prev = p.Fraction
	}
	pts = append(pts, f1(c.X1)+","+f1(c.y(prev, 1)))
	c.Points = strings.Join(pts, " ")
	return c
}

// decadeLabel names 10^d seconds.
func decadeLabel(d float64) string {
	switch {
	case d < 0:
		return strconv.FormatFloat(math.Pow(10, d+3), 'f', -1, 64) + " ms"
	case d <= 3:
		return strconv.FormatFloat(math.Pow(10, d), 'f', -1, 64) + " s"
	}
	return "1e" + strconv.Itoa(int(d)) + " s"
}
