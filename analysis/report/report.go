package report

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spoki-telescope/spoki/analysis/download"
	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/records"
)

// Defaults of Config.
const (
	DefaultTopN     = 25
	DefaultTopKeys  = 1000
	DefaultMaxHours = 62 * 24
	// PrefixBytes is the length of the payload prefixes counted.
	PrefixBytes = 16
)

// Config holds the settings of Build. Zero values mean the defaults.
type Config struct {
	// KnownScanners is the directory of ips.NAME.txt lists ("" or a
	// missing directory: the built-in prefixes only).
	KnownScanners string
	// RawDir holds the raw logs for the contact types of assemble output
	// whose rack carries no payload (contact-types' -r); "" skips them.
	RawDir string
	// TopN is how many rows each top list shows (default 25).
	TopN int
	// TopKeys is how many distinct keys each top list (payload prefixes,
	// hosts, file names, credentials, JA4, HASSH) holds (default 1000).
	TopKeys int
	// MaxHours caps the hours of the time series (default 62 days); SYNs
	// of further hours count in Cut.Hours only.
	MaxHours int
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

// ScannerNames are the fingerprints of records.Fingerprint, in its order,
// then "other" for a name this version does not know.
var ScannerNames = []string{"zmap", "masscan", "mirai", "nmap", "unknown", "other"}

// Report is the result of Build: every number of the text, JSON and HTML
// output, which are all rendered from it.
type Report struct {
	// Tags are the telescope tags of the input file names.
	Tags []string `json:"tags"`
	// Start and End are the first and last record time (nil: none).
	Start *time.Time `json:"start"`
	End   *time.Time `json:"end"`
	// Source says what was read: "assemble output", "event log" or both.
	Source string `json:"source"`
	// Inputs lists the files read.
	Inputs []Input `json:"inputs"`
	// Totals are the whole run's SYN counts.
	Totals Totals `json:"totals"`
	// Hours is the time series, one entry per UTC hour from the first to
	// the last (hours without SYNs included) when they fit in
	// Limits.MaxHours, else the hours seen.
	Hours []Hour `json:"hours"`
	// Scanners counts the SYNs by fingerprint, in ScannerNames order.
	Scanners []ScannerCount `json:"scanners"`
	// Ports holds the top ports of each category, in Categories order.
	Ports []PortClass `json:"ports"`
	// TwoPhase holds the two-phase events: contact types and delays.
	TwoPhase TwoPhase `json:"two_phase"`
	// PayloadPrefixes are the first PrefixBytes bytes of the payloads of
	// all connections; TwoPhasePrefixes those of the two-phase events.
	PayloadPrefixes  TopList `json:"payload_prefixes"`
	TwoPhasePrefixes TopList `json:"two_phase_payload_prefixes"`
	// DownloaderHosts and DownloaderFiles are the servers and file names
	// of the downloader commands seen.
	DownloaderHosts TopList `json:"downloader_hosts"`
	DownloaderFiles TopList `json:"downloader_files"`
	// Credentials are the login attempts (telnet, mqtt, tds), keyed
	// "USER\tPASSWORD" (Go-quoted when either holds a tab or a control
	// byte).
	Credentials TopList `json:"credentials"`
	// JA4 and HASSH are the TLS and SSH client fingerprints.
	JA4   TopList `json:"ja4"`
	HASSH TopList `json:"hassh"`
	// Limits are the bounds the report was built with.
	Limits Limits `json:"limits"`
	// Cut counts what the bounds cut.
	Cut Cut `json:"cut"`
}

// Input is one file read.
type Input struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
	Lines int    `json:"lines"`
	// Records counts the lines used; ParseErrors those that did not parse
	// or had an unknown tag.
	Records     int `json:"records"`
	ParseErrors int `json:"parse_errors"`
	// ReadError is set when the file ended early (a truncated gzip).
	ReadError bool `json:"read_error,omitempty"`
}

// Totals are the counts of the whole input.
type Totals struct {
	Files       int `json:"files"`
	Lines       int `json:"lines"`
	Records     int `json:"records"`
	ParseErrors int `json:"parse_errors"`
	SYNs        int `json:"syns"`
	Irregular   int `json:"irregular"`
	// IrregularShare is Irregular/SYNs in percent, 2 decimals.
	IrregularShare float64 `json:"irregular_share"`
	// Sources and Networks count distinct source addresses and their
	// /24s (IPv4) or /48s (IPv6); Estimated says they are HyperLogLog
	// estimates (past Limits.ExactDistinct).
	Sources   int  `json:"sources"`
	Networks  int  `json:"networks"`
	Estimated bool `json:"estimated"`
	Sessions  int  `json:"sessions"`
}

// Hour is one hour of the time series.
type Hour struct {
	Start          time.Time `json:"start"`
	SYNs           int       `json:"syns"`
	Irregular      int       `json:"irregular"`
	IrregularShare float64   `json:"irregular_share"`
	Sources        int       `json:"sources"`
	Networks       int       `json:"networks"`
	Estimated      bool      `json:"estimated"`
}

// ScannerCount is one fingerprint's row.
type ScannerCount struct {
	Name      string  `json:"name"`
	SYNs      int     `json:"syns"`
	Irregular int     `json:"irregular"`
	Share     float64 `json:"share"`
	Sources   int     `json:"sources"`
	Estimated bool    `json:"estimated"`
}

// PortClass is the top-ports list of one category.
type PortClass struct {
	Class            string         `json:"class"`
	Title            string         `json:"title"`
	Total            int            `json:"total"`
	ExcludedScanners int            `json:"excluded_scanners"`
	ByScanner        map[string]int `json:"by_scanner"`
	PortsTargeted    int            `json:"ports_targeted"`
	Top              []PortCount    `json:"top"`
}

// TwoPhase holds the two-phase events.
type TwoPhase struct {
	Events  int          `json:"events"`
	Contact ContactTypes `json:"contact_types"`
	// Delays counts the events with a delay; DelayCDF is their CDF at
	// the edges of the delay bins (10 per decade, 1 ms to 10^6 s), from
	// the first non-empty bin to the first that reaches 1. MedianS and
	// P90S are the bin edges where the CDF reaches 0.5 and 0.9.
	Delays   int        `json:"delays"`
	DelayCDF []CDFPoint `json:"delay_cdf"`
	MedianS  float64    `json:"median_s"`
	P90S     float64    `json:"p90_s"`
	// OverMaxS counts delays above the last edge.
	OverMaxS int `json:"over_max"`
}

// CDFPoint is one point of the delay CDF: Count delays are at most
// DelayS seconds, Fraction of all.
type CDFPoint struct {
	DelayS   float64 `json:"delay_s"`
	Count    int     `json:"count"`
	Fraction float64 `json:"fraction"`
}

// Limits are the memory bounds. Whatever the input, the report holds at
// most MaxHours hours of 2 distinct counters (each at most
// ExactDistinctHour hashes or 4 KiB of registers), 14 more distinct
// counters (at most ExactDistinct hashes or 4 KiB), 3 × 65,536 port
// counters, 7 top lists of TopKeys keys of at most MaxKeyBytes bytes, the
// delay bins and one hour of raw-log ACKs (at most 64Ki of 2 KiB); see
// BenchmarkWorstCaseMemory for what that is at the defaults.
type Limits struct {
	TopN          int `json:"top_n"`
	TopKeys       int `json:"top_keys"`
	MaxKeyBytes   int `json:"max_key_bytes"`
	PrefixBytes   int `json:"prefix_bytes"`
	MaxHours      int `json:"max_hours"`
	ExactDistinct int `json:"exact_distinct"`
	// ExactDistinctHour is the exact part of each hour's counters.
	ExactDistinctHour int `json:"exact_distinct_hour"`
	HLLRegisters      int `json:"hll_registers"`
}

// Cut counts what the bounds cut.
type Cut struct {
	// HoursSYNs counts the SYNs of hours past Limits.MaxHours (they count
	// in the totals but not in the time series).
	HoursSYNs int `json:"hours_syns"`
	// TopKeys sums the evictions of the top lists.
	TopKeys int `json:"top_keys"`
	// RawAcks counts the raw-log ACKs past the table's bound.
	RawAcks int `json:"raw_acks"`
}

// PortCount is one row of a top-ports list.
type PortCount struct {
	Port  int     `json:"port"`
	Count int     `json:"count"`
	Share float64 `json:"share"`
}

// ContactTypes are contact-types' counters (the paper's Table 1). all =
// without-ack + without-payload + with-payload and with-payload = ascii +
// hex + downloader.
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

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: write json: %w", err)
	}
	return nil
}

// delayEdges are the upper edges (seconds) of the delay bins: 10 per
// decade from 1 ms to 10^6 s.
var delayEdges = func() []float64 {
	var e []float64
	for k := -30; k <= 60; k++ {
		e = append(e, math.Pow(10, float64(k)/10))
	}
	return e
}()

// builder holds the state of one Build.
type builder struct {
	cfg   Config
	r     *Report
	ks    *KnownScanners
	file  string
	in    *Input
	acks  *ackDB
	ports map[string]*ports

	hours        map[int64]*hourAgg
	src, nets    distinct
	scanSrc      []distinct
	scanSYNs     []int
	scanIrr      []int
	delays       []int // per delayEdges bin, then one more for the rest
	tpLog        int   // phase_two events of the event log
	tpAcked      int
	tpAckedEmpty int
	tpClass      ContactTypes // of the acked two_phase events
	sawTwoPhase  bool
	start, end   time.Time
	tags         map[string]bool
	sources      map[string]bool
	lists        map[string]*topK
}

type hourAgg struct {
	syns, irr int
	src, nets distinct
}

// The top lists, by their JSON names.
var listNames = []string{"payload_prefixes", "two_phase_payload_prefixes", "downloader_hosts",
	"downloader_files", "credentials", "ja4", "hassh"}

// Build reads the inputs (files or directories) and computes the report.
func Build(ctx context.Context, cfg Config, paths []string) (*Report, error) {
	if cfg.TopN <= 0 {
		cfg.TopN = DefaultTopN
	}
	if cfg.TopKeys <= 0 {
		cfg.TopKeys = DefaultTopKeys
	}
	if cfg.MaxHours <= 0 {
		cfg.MaxHours = DefaultMaxHours
	}
	ks, err := LoadKnownScanners(cfg.KnownScanners)
	if err != nil {
		return nil, err
	}
	files, err := download.ExpandInputs(paths)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("report: no event log (*.jsonl) or assemble output (*.json.gz) in %s; for raw logs (*.csv) run `spoki assemble --flush-at-eof` first", strings.Join(paths, " "))
	}
	b := newBuilder(cfg, ks)
	for _, f := range files {
		b.file = f
		in := Input{Path: f}
		if fi, err := os.Stat(f); err == nil {
			in.Bytes = fi.Size()
		}
		b.in = &in
		if tag := fileTag(filepath.Base(f)); tag != "" {
			b.tags[tag] = true
		}
		var st download.ScanStats
		if err := download.ForEachLine(ctx, []string{f}, &st, b.line); err != nil {
			return nil, fmt.Errorf("report: %s: %w", f, err)
		}
		in.Lines = st.Lines
		in.ParseErrors += st.BadLines
		in.ReadError = st.BadFiles > 0
		b.r.Inputs = append(b.r.Inputs, in)
	}
	b.finish()
	return b.r, nil
}

func newBuilder(cfg Config, ks *KnownScanners) *builder {
	b := &builder{
		cfg: cfg, r: &Report{}, ks: ks,
		ports:    map[string]*ports{CatRegular: {}, CatIrregular: {}, CatTwoPhase: {}},
		hours:    map[int64]*hourAgg{},
		scanSrc:  make([]distinct, len(ScannerNames)),
		scanSYNs: make([]int, len(ScannerNames)),
		scanIrr:  make([]int, len(ScannerNames)),
		delays:   make([]int, len(delayEdges)+1),
		tags:     map[string]bool{},
		sources:  map[string]bool{},
		lists:    map[string]*topK{},
	}
	for _, n := range listNames {
		b.lists[n] = newTopK(cfg.TopKeys)
	}
	return b
}

// fileTag returns the tag of an event log (TAG.events.…) or assemble
// output (TAG-events-…) file name, "" for others.
func fileTag(name string) string {
	if i := strings.Index(name, ".events."); i > 0 {
		return name[:i]
	}
	if i := strings.LastIndex(name, "-events-"); i > 0 {
		return name[:i]
	}
	return ""
}

// line handles one input line of either format: an event-log line has an
// event type (readEvent knows its field name), an assemble record a tag.
func (b *builder) line(line []byte) error {
	var ev event
	if err := readEvent(line, &ev); err != nil {
		b.in.ParseErrors++
		return nil
	}
	if ev.Type != "" {
		b.sources["event log"] = true
		b.event(&ev)
		return nil
	}
	var in struct {
		Tag string `json:"tag"`
	}
	if json.Unmarshal(line, &in) != nil || in.Tag == "" {
		b.in.ParseErrors++
		return nil
	}
	b.sources["assemble output"] = true
	b.record(line, in.Tag)
	return nil
}

// seen extends the time range.
func (b *builder) seen(t time.Time) {
	if t.IsZero() {
		return
	}
	if b.start.IsZero() || t.Before(b.start) {
		b.start = t
	}
	if t.After(b.end) {
		b.end = t
	}
}

// syn counts one SYN in the totals, the time series and the
// fingerprints.
func (b *builder) syn(t time.Time, saddr string, irregular bool, scanner string) {
	b.seen(t)
	b.r.Totals.SYNs++
	if irregular {
		b.r.Totals.Irregular++
	}
	si := slices.Index(ScannerNames, scanner)
	if si < 0 {
		si = len(ScannerNames) - 1
	}
	b.scanSYNs[si]++
	if irregular {
		b.scanIrr[si]++
	}
	a, err := netip.ParseAddr(saddr)
	var ha, hn uint64
	if err == nil {
		a = a.Unmap()
		ha, hn = hashAddr(a), hashAddr(network(a))
		b.src.add(ha)
		b.nets.add(hn)
		b.scanSrc[si].add(ha)
	}
	key := t.Unix() / 3600
	h, ok := b.hours[key]
	if !ok {
		if len(b.hours) >= b.cfg.MaxHours {
			b.r.Cut.HoursSYNs++
			return
		}
		h = &hourAgg{src: distinct{limit: hourExactLimit}, nets: distinct{limit: hourExactLimit}}
		b.hours[key] = h
	}
	h.syns++
	if irregular {
		h.irr++
	}
	if err == nil {
		h.src.add(ha)
		h.nets.add(hn)
	}
}

// delay counts one two-phase delay in seconds.
func (b *builder) delay(sec float64) {
	i, _ := slices.BinarySearch(delayEdges, sec)
	b.delays[i]++
}

// payload counts a connection's payload prefix and its downloader
// commands (for assemble output; the event log has downloader events).
func (b *builder) payload(p []byte, twoPhase, extract bool) {
	if len(p) == 0 {
		return
	}
	pre := printablePrefix(p)
	b.lists["payload_prefixes"].add(pre)
	if twoPhase {
		b.lists["two_phase_payload_prefixes"].add(pre)
	}
	if extract {
		for _, d := range urls.Extract(p) {
			b.downloader(d.Server, d.Name)
		}
	}
}

func (b *builder) downloader(server, name string) {
	b.lists["downloader_hosts"].add(server)
	if name != "" {
		b.lists["downloader_files"].add(name)
	}
}

// printablePrefix renders the first PrefixBytes bytes of p: printable
// ASCII as is, \r \n \t by name, other bytes as \xNN, a backslash as \\.
func printablePrefix(p []byte) string {
	p = p[:min(len(p), PrefixBytes)]
	var sb strings.Builder
	for _, c := range p {
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	return sb.String()
}

// credKey is a credential's top-list key.
func credKey(user, pass string) string {
	q := func(s string) string {
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }) {
			return fmt.Sprintf("%q", s)
		}
		return s
	}
	return q(user) + "\t" + q(pass)
}

// classify counts a with-payload contact by its payload.
func classify(c *ContactTypes, p []byte) {
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

// event counts one event-log line.
func (b *builder) event(ev *event) {
	b.in.Records++
	switch ev.Type {
	case "syn":
		b.syn(ev.Time, ev.SrcIP, ev.Irregular, ev.Scanner)
		cat := CatRegular
		if ev.Irregular {
			cat = CatIrregular
		}
		b.count(cat, ev.SrcIP, ev.DestPort)
	case "session":
		b.seen(ev.Time)
		b.r.Totals.Sessions++
		b.payload(ev.Payload, false, false)
		for _, c := range ev.Creds {
			b.lists["credentials"].add(credKey(c.user, c.pass))
		}
		if ev.JA4 != "" {
			b.lists["ja4"].add(ev.JA4)
		}
		if ev.HASSH != "" {
			b.lists["hassh"].add(ev.HASSH)
		}
	case "downloader":
		b.seen(ev.Time)
		b.downloader(ev.Server, ev.Name)
	case "two_phase":
		b.sawTwoPhase = true
		switch ev.Stage {
		case "phase_two":
			b.seen(ev.Time)
			b.r.TwoPhase.Events++
			b.tpLog++
			b.count(CatTwoPhase, ev.SrcIP, ev.DestPort)
			b.delay(ev.DelayMS / 1000)
		case "acked":
			b.tpAcked++
			if len(ev.TwoPhasePayload) == 0 {
				b.tpAckedEmpty++
			} else {
				classify(&b.tpClass, ev.TwoPhasePayload)
				b.lists["two_phase_payload_prefixes"].add(printablePrefix(ev.TwoPhasePayload))
			}
		}
	}
}

// slot is an assemble record slot (the fields used here).
type slot struct {
	Trigger struct {
		Timestamp int64  `json:"timestamp"`
		Saddr     string `json:"saddr"`
		Daddr     string `json:"daddr"`
		IPID      uint16 `json:"ipid"`
		TTL       uint8  `json:"ttl"`
		Payload   struct {
			Sport   int      `json:"sport"`
			Dport   int      `json:"dport"`
			Snum    uint32   `json:"snum"`
			Window  uint16   `json:"window_size"`
			Options []string `json:"options"`
			Payload string   `json:"payload"`
		} `json:"payload"`
	} `json:"trigger"`
}

func (s *slot) time() time.Time { return time.UnixMilli(s.Trigger.Timestamp).UTC() }

// packet rebuilds the fields of the SYN that the classification reads.
func (s *slot) packet() records.Packet {
	t := &s.Trigger
	p := records.Packet{IPID: t.IPID, TTL: t.TTL, Proto: records.ProtoTCP, DstPort: uint16(t.Payload.Dport),
		Seq: t.Payload.Snum, Window: t.Payload.Window}
	p.Dst, _ = netip.ParseAddr(t.Daddr)
	for _, o := range t.Payload.Options {
		if int(p.NumOptions) == records.MaxOptions {
			p.OptionsTruncated = true
			break
		}
		kind := uint8(254) // any real option
		switch o {
		case "mss":
			kind = 2
		case "nop":
			kind = 1
		case "eol":
			kind = 0
		}
		p.Options[p.NumOptions] = kind
		p.NumOptions++
	}
	return p
}

// assembleSYN counts a SYN slot of an assemble record.
func (b *builder) assembleSYN(s *slot) {
	p := s.packet()
	irr, _ := records.Irregular(&p)
	b.syn(s.time(), s.Trigger.Saddr, irr, records.Fingerprint(&p).String())
}

// record counts one assemble record.
func (b *builder) record(line []byte, tag string) {
	var rec struct {
		Isyn, Iack, Rsyn, Rack *slot
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		b.in.ParseErrors++
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
		b.in.Records++
		return
	}
	if s == nil {
		b.in.ParseErrors++ // the original's ERR: unknown tag or missing slot
		return
	}
	b.in.Records++
	for _, sy := range []*slot{rec.Isyn, rec.Rsyn} {
		if sy != nil {
			b.assembleSYN(sy)
		}
	}
	for _, ack := range []*slot{rec.Iack, rec.Rack} {
		if ack == nil {
			continue
		}
		b.seen(ack.time())
		b.r.Totals.Sessions++
		if p, err := hex.DecodeString(ack.Trigger.Payload.Payload); err == nil {
			b.payload(p, cat == CatTwoPhase && ack == rec.Rack, true)
		}
	}
	b.count(cat, s.Trigger.Saddr, s.Trigger.Payload.Dport)
	if cat != CatTwoPhase {
		return
	}
	b.r.TwoPhase.Events++
	if rec.Rsyn != nil {
		b.delay(float64(rec.Rsyn.Trigger.Timestamp-rec.Isyn.Trigger.Timestamp) / 1000)
	}
	c := &b.r.TwoPhase.Contact
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
		classify(c, p)
	default:
		if rec.Rsyn != nil && b.cfg.RawDir != "" {
			t := &rec.Rsyn.Trigger
			key := fourTuple{t.Saddr, t.Daddr, t.Payload.Sport, t.Payload.Dport}
			if p, ok := b.ackDB().take(key, rec.Rack.Trigger.Payload.Snum); ok {
				c.Matched++
				classify(c, p)
				b.payload(p, true, true)
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
			b.ports[cat].addScanner(name)
			return
		}
	}
	b.ports[cat].add(port)
}

// ackDB returns the acks of the current file's hour, loading them once per
// hour.
func (b *builder) ackDB() *ackDB {
	vp, hour, ok := eventsFileHour(filepath.Base(b.file))
	if b.acks == nil || b.acks.vp != vp || !b.acks.hour.Equal(hour) {
		if b.acks != nil {
			b.r.Cut.RawAcks += b.acks.cut
		}
		b.acks = &ackDB{vp: vp, hour: hour, m: map[fourTuple][]ackPayload{}}
		if ok {
			b.acks.load(b.cfg.RawDir)
		}
	}
	return b.acks
}
