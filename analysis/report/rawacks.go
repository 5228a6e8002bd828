package report

// The raw log's ACK payloads, for assemble records whose rack carries no
// payload (contact-types' -r).

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

// Bounds of one hour's ACK table: at most maxRawAcks ACKs with payload,
// each payload cut to maxRawAckPayload bytes (the classification reads the
// start), so it holds at most 64Ki × 2 KiB = 128 MiB of payload. Rows
// beyond are counted in Cut.RawAcks.
const (
	maxRawAcks       = 64 << 10
	maxRawAckPayload = 2 << 10
)

// fourTuple is a TCP connection: saddr, daddr, sport, dport.
type fourTuple struct {
	saddr, daddr string
	sport, dport int
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
	n    int
	cut  int
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
		if db.n >= maxRawAcks {
			db.cut++
			continue
		}
		hx := get("payload")
		if len(hx) > 2*maxRawAckPayload {
			hx = hx[:2*maxRawAckPayload]
		}
		p, err := hex.DecodeString(hx)
		sport, err1 := strconv.Atoi(get("sport"))
		dport, err2 := strconv.Atoi(get("dport"))
		snum, err3 := strconv.ParseUint(get("snum"), 10, 32)
		if err != nil || err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		k := fourTuple{get("saddr"), get("daddr"), sport, dport}
		db.m[k] = append(db.m[k], ackPayload{uint32(snum), p})
		db.n++
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
