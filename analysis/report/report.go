package report

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spoki-telescope/spoki/analysis/download"
	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/records"
)

// Defaults of Config.
const (
	DefaultTopN         = 25
	DefaultPhaseTimeout = 600 * time.Second
)

// Config holds the settings of Build. Zero values mean the defaults.
type Config struct {
	// KnownScanners is the directory of ips.NAME.txt lists ("" or a
	// missing directory: the built-in prefixes only).
	KnownScanners string
	// RawDir holds the raw logs for the contact types of assemble output
	// whose rack carries no payload (contact-types' -r); "" skips them.
	RawDir string
	// TopN is how many ports per category are listed (default 25).
	TopN int
	// PhaseTimeout is the largest delay paired into a two-phase event in
	// the event log (default 600 s, assemble's).
	PhaseTimeout time.Duration
}

// Category keys, in the order of the original's report.
const (
	CatRegular   = "rs"
	CatIrregular = "is"
	CatTwoPhase  = "tp"
)

// Categories lists the category keys in report order.
var Categories = []string{CatRegular, CatIrregular, CatTwoPhase}

// categoryTitles are the original's section titles (its "irrgular" typo
// fixed).
var categoryTitles = map[string]string{
	CatRegular:   "regular sequences",
	CatIrregular: "irregular sequences",
	CatTwoPhase:  "two phase",
}

// Ports counts the destination ports of one category.
type Ports struct {
	// Counts maps a port to its count.
	Counts map[int]int `json:"-"`
	// Order holds the ports in first-seen order (the original's dict
	// order, which breaks ties of the top list).
	Order []int `json:"-"`
	// Total is the sum of Counts.
	Total int `json:"total"`
	// KnownScanners counts the events from known scanners, left out of
	// Counts.
	KnownScanners int `json:"excluded_scanners"`
	// ByScanner splits KnownScanners by scanner name.
	ByScanner map[string]int `json:"by_scanner"`
}

func (p *Ports) add(port int) {
	if p.Counts == nil {
		p.Counts = map[int]int{}
	}
	if _, ok := p.Counts[port]; !ok {
		p.Order = append(p.Order, port)
	}
	p.Counts[port]++
	p.Total++
}

func (p *Ports) addScanner(name string) {
	if p.ByScanner == nil {
		p.ByScanner = map[string]int{}
	}
	p.KnownScanners++
	p.ByScanner[name]++
}

// PortCount is one row of a top list.
type PortCount struct {
	Port  int     `json:"port"`
	Count int     `json:"count"`
	Share float64 `json:"share"`
}

// Top returns the n ports with the highest counts, ties in first-seen
// order (a stable sort, as the original's), with their share of Total in
// percent rounded to 2 decimals.
func (p *Ports) Top(n int) []PortCount {
	out := make([]PortCount, 0, len(p.Order))
	for _, port := range p.Order {
		out = append(out, PortCount{Port: port, Count: p.Counts[port]})
	}
	slices.SortStableFunc(out, func(a, b PortCount) int { return b.Count - a.Count })
	if len(out) > n {
		out = out[:n]
	}
	for i := range out {
		out[i].Share = share(out[i].Count, p.Total)
	}
	return out
}

// ContactTypes are contact-types' counters (the column order of its CSV).
// all = without-ack + without-payload + with-payload and with-payload =
// ascii + hex + downloader.
type ContactTypes struct {
	All            int `json:"all"`
	WithoutAck     int `json:"without-ack"`
	WithoutPayload int `json:"without-payload"`
	WithPayload    int `json:"with-payload"`
	ASCII          int `json:"ascii"`
	Hex            int `json:"hex"`
	Downloader     int `json:"downloader"`
	Matched        int `json:"matched"`
}

// Rows returns the counters as (name, value) in the CSV's column order.
func (c ContactTypes) Rows() []NamedCount {
	return []NamedCount{
		{"all", c.All}, {"without-ack", c.WithoutAck}, {"without-payload", c.WithoutPayload},
		{"with-payload", c.WithPayload}, {"ascii", c.ASCII}, {"hex", c.Hex},
		{"downloader", c.Downloader}, {"matched", c.Matched},
	}
}

// NamedCount is one labelled count.
type NamedCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// delayBins are the upper bounds (exclusive, seconds) of the delay
// histogram; the last bin is open. Roughly logarithmic: scanners come back
// within a second or after minutes.
var delayBins = []int{1, 2, 5, 10, 30, 60, 120, 300, 600}

// Report is the result of Build.
type Report struct {
	// Source says what was read: "assemble output", "event log" or both.
	Source string
	// Files, Records and Errors count the input; Errors are records that
	// did not parse or had an unknown tag.
	Files, Records, Errors int
	// Ports holds the categories, keyed by CatRegular, ….
	Ports map[string]*Ports
	// Contact holds the contact types of the two-phase events.
	Contact ContactTypes
	// Delays holds the delay histogram: Delays[i] counts the delays below
	// delayBins[i] (and at least the previous bound); the last entry the
	// rest.
	Delays []int
	// TopN is the length of the top lists.
	TopN int

	sources map[string]bool
}

// DelayBins returns the histogram's bin labels, matching Delays.
func DelayBins() []string {
	out := make([]string, 0, len(delayBins)+1)
	lo := 0
	for _, hi := range delayBins {
		out = append(out, "["+itoa(lo)+","+itoa(hi)+")")
		lo = hi
	}
	return append(out, "≥"+itoa(lo))
}

func (r *Report) addDelay(sec int64) {
	i := 0
	for i < len(delayBins) && sec >= int64(delayBins[i]) {
		i++
	}
	r.Delays[i]++
}

// Build reads the inputs (files or directories) and computes the report.
func Build(ctx context.Context, cfg Config, paths []string) (*Report, error) {
	if cfg.TopN <= 0 {
		cfg.TopN = DefaultTopN
	}
	if cfg.PhaseTimeout <= 0 {
		cfg.PhaseTimeout = DefaultPhaseTimeout
	}
	ks, err := LoadKnownScanners(cfg.KnownScanners)
	if err != nil {
		return nil, err
	}
	files, err := download.ExpandInputs(paths)
	if err != nil {
		return nil, err
	}
	r := &Report{
		Ports:   map[string]*Ports{CatRegular: {}, CatIrregular: {}, CatTwoPhase: {}},
		Delays:  make([]int, len(delayBins)+1),
		TopN:    cfg.TopN,
		sources: map[string]bool{},
	}
	b := &builder{cfg: cfg, r: r, ks: ks, live: newLivePairer(cfg.PhaseTimeout)}
	for _, f := range files {
		b.file = f
		var st download.ScanStats
		if err := download.ForEachLine(ctx, []string{f}, &st, b.line); err != nil {
			return nil, err
		}
		r.Files += st.Files
		r.Errors += st.BadLines
	}
	b.live.finish(b)
	var src []string
	for _, s := range []string{"assemble output", "event log"} {
		if r.sources[s] {
			src = append(src, s)
		}
	}
	r.Source = strings.Join(src, " and ")
	return r, nil
}

// builder holds the state of one Build.
type builder struct {
	cfg  Config
	r    *Report
	ks   *KnownScanners
	live *livePairer
	file string
	acks *ackDB
}

// line handles one input line of either format.
func (b *builder) line(line []byte) error {
	var in struct {
		EventType string `json:"event_type"`
		Tag       string `json:"tag"`
	}
	if err := json.Unmarshal(line, &in); err != nil {
		b.r.Errors++
		return nil
	}
	switch {
	case in.EventType != "":
		b.r.sources["event log"] = true
		return b.event(line, in.EventType)
	case in.Tag != "":
		b.r.sources["assemble output"] = true
		b.record(line, in.Tag)
	default:
		b.r.Errors++
	}
	return nil
}

// slot is an assemble record slot (the fields used here).
type slot struct {
	Trigger struct {
		Timestamp int64  `json:"timestamp"`
		Saddr     string `json:"saddr"`
		Daddr     string `json:"daddr"`
		Payload   struct {
			Sport   int    `json:"sport"`
			Dport   int    `json:"dport"`
			Snum    uint32 `json:"snum"`
			Payload string `json:"payload"`
		} `json:"payload"`
	} `json:"trigger"`
}

// record counts one assemble record (topports and contact-types).
func (b *builder) record(line []byte, tag string) {
	var rec struct {
		Isyn, Iack, Rsyn, Rack *slot
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		b.r.Errors++
		return
	}
	var cat string
	var s *slot
	switch tag {
	case "isyn", "isyn (acked)":
		cat, s = CatIrregular, rec.Isyn
	case "rsyn", "rsyn (acked)":
		cat, s = CatRegular, rec.Rsyn
	case "two-phase", "two-phase (no ack)":
		cat, s = CatTwoPhase, rec.Isyn
	case "ack":
		return
	}
	if s == nil {
		b.r.Errors++ // the original's ERR: unknown tag or missing slot
		return
	}
	b.r.Records++
	b.count(cat, s.Trigger.Saddr, s.Trigger.Payload.Dport)
	if cat != CatTwoPhase {
		return
	}
	if rec.Rsyn != nil {
		b.r.addDelay((rec.Rsyn.Trigger.Timestamp - rec.Isyn.Trigger.Timestamp) / 1000)
	}
	c := &b.r.Contact
	c.All++
	switch {
	case rec.Rack == nil:
		c.WithoutAck++
	case rec.Rack.Trigger.Payload.Payload != "":
		p, err := hex.DecodeString(rec.Rack.Trigger.Payload.Payload)
		if err != nil {
			c.WithPayload++
			c.Hex++
			return
		}
		b.classify(p)
	default:
		if rec.Rsyn != nil && b.cfg.RawDir != "" {
			t := &rec.Rsyn.Trigger
			key := fourTuple{t.Saddr, t.Daddr, t.Payload.Sport, t.Payload.Dport}
			if p, ok := b.ackDB().take(key, rec.Rack.Trigger.Payload.Snum); ok {
				c.Matched++
				b.classify(p)
				return
			}
		}
		c.WithoutPayload++
	}
}

// count adds one event of category cat from saddr to port.
func (b *builder) count(cat, saddr string, port int) {
	if a, err := netip.ParseAddr(saddr); err == nil {
		if name, ok := b.ks.Lookup(a); ok {
			b.r.Ports[cat].addScanner(name)
			return
		}
	}
	b.r.Ports[cat].add(port)
}

// classify counts a with-payload contact by its payload.
func (b *builder) classify(p []byte) {
	c := &b.r.Contact
	c.WithPayload++
	switch {
	case !utf8.Valid(p):
		c.Hex++
	case len(urls.Extract(p)) > 0:
		c.Downloader++
	default:
		c.ASCII++
	}
}

// ackDB returns the acks of the current file's hour, loading them once per
// hour.
func (b *builder) ackDB() *ackDB {
	vp, hour, ok := eventsFileHour(filepath.Base(b.file))
	if b.acks == nil || b.acks.vp != vp || !b.acks.hour.Equal(hour) {
		b.acks = &ackDB{vp: vp, hour: hour, m: map[fourTuple][]ackPayload{}}
		if ok {
			b.acks.load(b.cfg.RawDir)
		}
	}
	return b.acks
}

// liveEvent holds the event-log fields used here.
type liveEvent struct {
	Timestamp records.EventTime `json:"timestamp"`
	SrcIP     string            `json:"src_ip"`
	SrcPort   int               `json:"src_port"`
	DestIP    string            `json:"dest_ip"`
	DestPort  int               `json:"dest_port"`
	Irregular bool              `json:"irregular"`
	Payload   string            `json:"payload"`
}

// event handles one event-log line.
func (b *builder) event(line []byte, typ string) error {
	if typ != "syn" && typ != "session" {
		return nil
	}
	var ev liveEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		b.r.Errors++
		return nil
	}
	if typ == "session" {
		p, err := base64.StdEncoding.DecodeString(ev.Payload)
		if err != nil {
			b.r.Errors++
			return nil
		}
		b.live.session(fourTuple{ev.SrcIP, ev.DestIP, ev.SrcPort, ev.DestPort}, p)
		return nil
	}
	b.r.Records++
	b.live.syn(b, &ev)
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
