package report

import (
	"math"
	"slices"
	"strings"
	"time"
)

// ports counts the destination ports of one category (at most 65,536
// keys).
type ports struct {
	counts map[int]int
	// order holds the ports in first-seen order (the original's dict
	// order, which breaks ties of the top list).
	order        []int
	total        int
	knownScanner int
	byScanner    map[string]int
}

func (p *ports) add(port int) {
	if p.counts == nil {
		p.counts = map[int]int{}
	}
	if _, ok := p.counts[port]; !ok {
		p.order = append(p.order, port)
	}
	p.counts[port]++
	p.total++
}

func (p *ports) addScanner(name string) {
	if p.byScanner == nil {
		p.byScanner = map[string]int{}
	}
	p.knownScanner++
	p.byScanner[name]++
}

// top returns the n ports with the highest counts, ties in first-seen
// order (a stable sort, as the original's), with their share of the total
// in percent rounded to 2 decimals.
func (p *ports) top(n int) []PortCount {
	out := make([]PortCount, 0, len(p.order))
	for _, port := range p.order {
		out = append(out, PortCount{Port: port, Count: p.counts[port]})
	}
	slices.SortStableFunc(out, func(a, b PortCount) int { return b.Count - a.Count })
	if len(out) > n {
		out = out[:n]
	}
	for i := range out {
		out[i].Share = share(out[i].Count, p.total)
	}
	return out
}

// share is round(n*100/total, 2), 0 for an empty total.
func share(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(float64(n)*100/float64(total)*100) / 100
}

// finish turns the counters into the Report.
func (b *builder) finish() {
	r := b.r
	cfg := b.cfg
	for t := range b.tags {
		r.Tags = append(r.Tags, t)
	}
	slices.Sort(r.Tags)
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if !b.start.IsZero() {
		s, e := b.start, b.end
		r.Start, r.End = &s, &e
	}
	var src []string
	for _, s := range []string{"assemble output", "event log"} {
		if b.sources[s] {
			src = append(src, s)
		}
	}
	r.Source = strings.Join(src, " and ")
	t := &r.Totals
	for _, in := range r.Inputs {
		t.Files++
		t.Lines += in.Lines
		t.Records += in.Records
		t.ParseErrors += in.ParseErrors
	}
	t.IrregularShare = share(t.Irregular, t.SYNs)
	t.Sources, t.Networks = b.src.count(), b.nets.count()
	t.Estimated = b.src.Estimated() || b.nets.Estimated()

	keys := make([]int64, 0, len(b.hours))
	for k := range b.hours {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > 0 && keys[len(keys)-1]-keys[0] < int64(cfg.MaxHours) {
		// Fill the hours without SYNs, so that the series has no holes.
		var all []int64
		for k := keys[0]; k <= keys[len(keys)-1]; k++ {
			all = append(all, k)
		}
		keys = all
	}
	r.Hours = []Hour{}
	for _, k := range keys {
		h := Hour{Start: time.Unix(k*3600, 0).UTC()}
		if a := b.hours[k]; a != nil {
			h.SYNs, h.Irregular = a.syns, a.irr
			h.IrregularShare = share(a.irr, a.syns)
			h.Sources, h.Networks = a.src.count(), a.nets.count()
			h.Estimated = a.src.Estimated() || a.nets.Estimated()
		}
		r.Hours = append(r.Hours, h)
	}

	for i, name := range ScannerNames {
		r.Scanners = append(r.Scanners, ScannerCount{Name: name, SYNs: b.scanSYNs[i], Irregular: b.scanIrr[i],
			Share: share(b.scanSYNs[i], t.SYNs), Sources: b.scanSrc[i].count(), Estimated: b.scanSrc[i].Estimated()})
	}

	for _, cat := range Categories {
		p := b.ports[cat]
		bs := p.byScanner
		if bs == nil {
			bs = map[string]int{}
		}
		r.Ports = append(r.Ports, PortClass{Class: cat, Title: categoryTitles[cat], Total: p.total,
			ExcludedScanners: p.knownScanner, ByScanner: bs, PortsTargeted: len(p.order), Top: p.top(cfg.TopN)})
	}

	tp := &r.TwoPhase
	if b.sawTwoPhase {
		// The event log: the acked stage of an event carries its session;
		// an event without one had no connection.
		c := b.tpClass
		c.All = b.tpLog
		c.WithoutPayload = b.tpAckedEmpty
		c.WithoutAck = max(0, b.tpLog-b.tpAcked)
		tp.Contact.All += c.All
		tp.Contact.WithoutAck += c.WithoutAck
		tp.Contact.WithoutPayload += c.WithoutPayload
		tp.Contact.WithPayload += c.WithPayload
		tp.Contact.ASCII += c.ASCII
		tp.Contact.Hex += c.Hex
		tp.Contact.Downloader += c.Downloader
	}
	for _, n := range b.delays {
		tp.Delays += n
	}
	tp.OverMaxS = b.delays[len(delayEdges)]
	tp.DelayCDF = []CDFPoint{}
	cum := 0
	for i, edge := range delayEdges {
		cum += b.delays[i]
		if cum == 0 {
			continue
		}
		f := float64(cum) / float64(tp.Delays)
		tp.DelayCDF = append(tp.DelayCDF, CDFPoint{DelayS: edge, Count: cum, Fraction: f})
		if tp.MedianS == 0 && f >= 0.5 {
			tp.MedianS = edge
		}
		if tp.P90S == 0 && f >= 0.9 {
			tp.P90S = edge
		}
		if cum == tp.Delays {
			break
		}
	}

	lists := map[string]*TopList{
		"payload_prefixes": &r.PayloadPrefixes, "two_phase_payload_prefixes": &r.TwoPhasePrefixes,
		"downloader_hosts": &r.DownloaderHosts, "downloader_files": &r.DownloaderFiles,
		"credentials": &r.Credentials, "ja4": &r.JA4, "hassh": &r.HASSH,
	}
	for name, dst := range lists {
		*dst = b.lists[name].list(cfg.TopN)
		r.Cut.TopKeys += dst.Evicted
	}
	if b.acks != nil {
		r.Cut.RawAcks += b.acks.cut
	}
	r.Limits = Limits{TopN: cfg.TopN, TopKeys: cfg.TopKeys, MaxKeyBytes: maxKeyBytes, PrefixBytes: PrefixBytes,
		MaxHours: cfg.MaxHours, ExactDistinct: exactLimit, ExactDistinctHour: hourExactLimit, HLLRegisters: 1 << hllBits}
}
