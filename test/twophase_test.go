package test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// e2ePairKey identifies a two-phase pair: source, target, port and the
// source ports of the two phases.
type e2ePairKey struct {
	src, dst    string
	dport       int
	sport1, sp2 int
}

// TestTwoPhaseLiveMatchesAssemble runs two-phase scans against the live
// telescope (an irregular SYN from hping3, then a regular handshake from
// curl or nc) and checks that the `two_phase` events spoki emits as they
// happen name the same pairs that `spoki assemble` finds afterwards in the
// same hour's raw and reply logs.
func TestTwoPhaseLiveMatchesAssemble(t *testing.T) {
	l := e2eNewLab(t, lab.Config{}, "hping3", "curl", "nc")
	tel := e2eStartTelescope(t, l)
	start := time.Now().UTC()

	targets := []struct {
		addr string
		port int
		http bool
	}{{"198.51.100.80", 80, true}, {"198.51.100.81", 8080, true}, {"198.51.100.23", 23, false}}
	for i, tg := range targets {
		// hping3's SYNs carry no TCP options: irregular by the paper's rules.
		e2eExec(t, l, l.Scanner, 10*time.Second, nil, "hping3", "-S", "-c", "1", "-s", strconv.Itoa(41000+i),
			"-p", strconv.Itoa(tg.port), tg.addr)
		if tg.http {
			e2eExec(t, l, l.Scanner, 10*time.Second, nil, "curl", "-sS", "--noproxy", "*", "--max-time", "5",
				"http://"+tg.addr+":"+strconv.Itoa(tg.port)+"/")
		} else {
			e2eExec(t, l, l.Scanner, 10*time.Second, []byte("root\r\n"), "nc", "-q", "1", "-w", "3", tg.addr, strconv.Itoa(tg.port))
		}
	}
	// A regular SYN to a port that saw no irregular one: no pair.
	e2eExec(t, l, l.Scanner, 10*time.Second, []byte("x\r\n"), "nc", "-q", "1", "-w", "3", "198.51.100.99", "9999")
	time.Sleep(500 * time.Millisecond)
	tel.stop(t)

	live := map[e2ePairKey]bool{}
	acked := 0
	for _, e := range e2eRawEvents(t, tel.logDir) {
		if e["event_type"] != "two_phase" {
			continue
		}
		k := e2ePairKey{src: e["src_ip"].(string), dst: e["dest_ip"].(string), dport: int(e["dest_port"].(float64)),
			sport1: int(e2eField(e, "phase_one", "src_port").(float64)), sp2: int(e["src_port"].(float64))}
		switch e["stage"] {
		case "phase_two":
			live[k] = true
		case "acked":
			acked++
			if e2eField(e, "session", "app_proto") == nil {
				t.Errorf("acked two_phase event without app_proto: %v", e)
			}
		}
	}
	if len(live) != len(targets) {
		t.Errorf("live two_phase pairs = %d (%v), want %d", len(live), live, len(targets))
	}
	if acked != len(targets) {
		t.Errorf("acked two_phase events = %d, want %d", acked, len(targets))
	}

	out := t.TempDir()
	_, errOut, code := e2eExecLocal(t, 60*time.Second, labSpokiBin(t), "assemble", "--start", start.Format("2006-01-02T15"),
		"--tag", e2eTag, "--out", out, "--flush-at-eof", tel.logDir)
	if code != 0 {
		t.Fatalf("spoki assemble: exit %d: %s", code, errOut)
	}
	offline := map[e2ePairKey]bool{}
	files, _ := filepath.Glob(filepath.Join(out, "*.json.gz"))
	for _, f := range files {
		for _, rec := range e2eReadGzipJSON(t, f) {
			tag, _ := rec["tag"].(string)
			if tag != "two-phase" && tag != "two-phase (no ack)" {
				continue
			}
			isyn := e2eField(rec, "isyn", "trigger")
			rsyn := e2eField(rec, "rsyn", "trigger")
			im, _ := isyn.(map[string]any)
			rm, _ := rsyn.(map[string]any)
			if im == nil || rm == nil {
				t.Errorf("two-phase record without both SYNs: %v", rec)
				continue
			}
			offline[e2ePairKey{src: rm["saddr"].(string), dst: rm["daddr"].(string),
				dport:  int(e2eField(rm, "payload", "dport").(float64)),
				sport1: int(e2eField(im, "payload", "sport").(float64)), sp2: int(e2eField(rm, "payload", "sport").(float64))}] = true
		}
	}
	if !sameKeys(live, offline) {
		t.Errorf("live pairs %v\n  differ from assemble's %v", sortedKeys(live), sortedKeys(offline))
	}
}

func sameKeys(a, b map[e2ePairKey]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sortedKeys(m map[e2ePairKey]bool) []e2ePairKey {
	var out []e2ePairKey
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dst < out[j].dst })
	return out
}

// e2eReadGzipJSON reads a gzip file of JSON lines (every gzip member).
func e2eReadGzipJSON(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, m)
	}
	return out
}

// e2eExecLocal runs a command in the test's own namespace (file-only work
// such as spoki assemble), bounded by timeout.
func e2eExecLocal(t *testing.T, timeout time.Duration, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = -1
	}
	return o.String(), e.String(), code
}
