package report

// The event log's approximate two-phase pairing (see the package doc).

import (
	"bufio"
	"encoding/hex"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/analysis/download"
)

// fourTuple is a TCP connection: saddr, daddr, sport, dport.
type fourTuple struct {
	saddr, daddr string
	sport, dport int
}

// pairKey is what the two phases share: source, destination and port.
type pairKey struct {
	saddr, daddr string
	dport        int
}

// pendingSYN is an irregular SYN waiting for its regular one.
type pendingSYN struct {
	t     time.Time
	saddr string
	dport int
}

// twoPhase is a paired event waiting for its session.
type twoPhase struct {
	conn fourTuple
}

// livePairer pairs the SYNs of the event log.
type livePairer struct {
	timeout  time.Duration
	pending  map[pairKey][]pendingSYN
	pairs    []twoPhase
	sessions map[fourTuple][]byte
}

func newLivePairer(timeout time.Duration) *livePairer {
	return &livePairer{timeout: timeout, pending: map[pairKey][]pendingSYN{}, sessions: map[fourTuple][]byte{}}
}

// syn handles one syn event: an irregular SYN waits, a regular one takes
// the oldest irregular SYN of its key that is within the timeout.
func (l *livePairer) syn(b *builder, ev *liveEvent) {
	k := pairKey{ev.SrcIP, ev.DestIP, ev.DestPort}
	if ev.Irregular {
		l.pending[k] = append(l.pending[k], pendingSYN{ev.Timestamp.Time, ev.SrcIP, ev.DestPort})
		return
	}
	q := l.pending[k]
	for len(q) > 0 && ev.Timestamp.Sub(q[0].t) >= l.timeout {
		// Too old to be phase one of anything later in the log.
		b.count(CatIrregular, q[0].saddr, q[0].dport)
		q = q[1:]
	}
	if len(q) == 0 || ev.Timestamp.Time.Before(q[0].t) {
		l.pending[k] = q
		if len(q) == 0 {
			delete(l.pending, k)
		}
		b.count(CatRegular, ev.SrcIP, ev.DestPort)
		return
	}
	first := q[0]
	if q = q[1:]; len(q) == 0 {
		delete(l.pending, k)
	} else {
		l.pending[k] = q
	}
	b.count(CatTwoPhase, first.saddr, first.dport)
	b.r.addDelay(int64(ev.Timestamp.Sub(first.t) / time.Second))
	l.pairs = append(l.pairs, twoPhase{fourTuple{ev.SrcIP, ev.DestIP, ev.SrcPort, ev.DestPort}})
}

// session remembers the payload of a connection (the first session of a
// four-tuple wins).
func (l *livePairer) session(c fourTuple, payload []byte) {
	if _, ok := l.sessions[c]; !ok {
		l.sessions[c] = payload
	}
}

// finish counts the irregular SYNs left and the contact types.
func (l *livePairer) finish(b *builder) {
	for _, q := range l.pending {
		for _, p := range q {
			b.count(CatIrregular, p.saddr, p.dport)
		}
	}
	c := &b.r.Contact
	for _, tp := range l.pairs {
		c.All++
		p, ok := l.sessions[tp.conn]
		switch {
		case !ok:
			c.WithoutAck++
		case len(p) == 0:
			c.WithoutPayload++
		default:
			b.classify(p)
		}
	}
}

// ackPayload is an ACK with payload from the raw log.
type ackPayload struct {
	snum    uint32
	payload []byte
}

// ackDB is contact-types' ackdb: the raw log's ACKs with payload, by
// four-tuple, of one hour.
type ackDB struct {
	vp   string
	hour time.Time
	m    map[fourTuple][]ackPayload
}

// eventsFileHour parses {vp}-events-{YYYYMMDD}-{HHMMSS}.json.gz.
func eventsFileHour(name string) (vp string, hour time.Time, ok bool) {
	i := strings.LastIndex(name, "-events-")
	if i < 0 || len(name) < i+8+15 {
		return "", time.Time{}, false
	}
	t, err := time.ParseInLocation("20060102-150405", name[i+8:i+8+15], time.UTC)
	if err != nil {
		return "", time.Time{}, false
	}
	return name[:i], t.Truncate(time.Hour), true
}

// load reads the raw log of the hour, .csv or .csv.gz. A missing file
// leaves the table empty (the original stops with a message).
func (db *ackDB) load(dir string) {
	pat := db.hour.Format("2006-01-02.15:00:00") + "." + db.vp + ".spoki.tcp.raw.*.csv*"
	files, _ := filepath.Glob(filepath.Join(dir, pat))
	for _, f := range files {
		if !strings.HasSuffix(f, ".csv") && !strings.HasSuffix(f, ".csv.gz") {
			continue
		}
		rc, err := download.OpenInput(f)
		if err != nil {
			continue
		}
		db.read(rc)
		rc.Close()
		return // .csv and .csv.gz of one hour hold the same rows
	}
}

// read adds the rows with proto tcp, ack 1, syn 0 and a payload.
func (db *ackDB) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	col := map[string]int{}
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(col) == 0 {
			for i, name := range f {
				col[name] = i
			}
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(f) {
				return f[i]
			}
			return ""
		}
		if get("proto") != "tcp" || get("ack") != "1" || get("syn") != "0" || get("payload") == "" {
			continue
		}
		p, err := hex.DecodeString(get("payload"))
		sport, err1 := strconv.Atoi(get("sport"))
		dport, err2 := strconv.Atoi(get("dport"))
		snum, err3 := strconv.ParseUint(get("snum"), 10, 32)
		if err != nil || err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		k := fourTuple{get("saddr"), get("daddr"), sport, dport}
		db.m[k] = append(db.m[k], ackPayload{uint32(snum), p})
	}
}

// take returns the first payload of k with sequence number snum and
// removes every entry of k with that number, as contact-types does.
func (db *ackDB) take(k fourTuple, snum uint32) ([]byte, bool) {
	list := db.m[k]
	var found []byte
	ok := false
	kept := list[:0]
	for _, a := range list {
		if a.snum == snum {
			if !ok {
				found, ok = a.payload, true
			}
			continue
		}
		kept = append(kept, a)
	}
	db.m[k] = kept
	return found, ok
}
