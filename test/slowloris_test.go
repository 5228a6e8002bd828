//go:build linux

package test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// Extra addresses of the scanner namespace, each a host of its own: the
// slowloris, the two-phase needle and the second host that must still be
// served. They are in the scanner link's /25, so the telescope host reaches
// them without a route.
var (
	slowlorisAddr4  = netip.MustParseAddr("192.0.2.3")
	needleAddr4     = netip.MustParseAddr("192.0.2.4")
	secondHostAddr4 = netip.MustParseAddr("192.0.2.5")
)

// labAddScannerAddr gives the scanner namespace one more IPv4 address on its
// link; the namespace's removal removes it.
func labAddScannerAddr(ctx context.Context, l *lab.Lab, a netip.Addr) error {
	out, err := exec.CommandContext(ctx, "ip", "-n", l.Scanner, "addr", "add", a.String()+"/25", "dev", l.ScannerIface).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr add %s: %w: %s", a, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// slowlorisRequest is the start of the HTTP request each connection sends
// at once; the rest of the header follows a byte at a time and never ends.
const slowlorisRequest = "GET / HTTP/1.1\r\nHost: 198.51.100.80\r\nUser-Agent: Mozilla/5.0\r\n"

// slowloris is a real slowloris client: kernel TCP connections from one
// address of the scanner namespace, each sending the start of an HTTP
// request and then one more header byte every interval, never finishing
// it. It does not reconnect: a connection the server ends stays ended, and
// is counted as cut.
type slowloris struct {
	conns  []*net.TCPConn
	failed int // dials that failed

	cut    atomic.Int64 // connections the server ended (EOF, reset)
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

// startSlowloris dials n connections from src to dst inside namespace ns,
// sequentially (each dial needs the namespace's thread), and starts
// trickling a byte on each connection every interval. Dials that fail
// within 3 s are counted, not fatal. The trickle stops by itself after
// lifetime; close resets every connection.
func startSlowloris(ns string, src netip.Addr, dst netip.AddrPort, n int, every, lifetime time.Duration) (*slowloris, error) {
	s := &slowloris{stop: make(chan struct{})}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 3 * time.Second}
	err := lab.InNetns(ns, func() error {
		for range n {
			c, err := d.Dial("tcp", dst.String())
			if err != nil {
				s.failed++
				continue
			}
			tc := c.(*net.TCPConn)
			_ = tc.SetLinger(0) // end with a reset: no TIME_WAIT left behind
			if _, err := tc.Write([]byte(slowlorisRequest)); err != nil {
				s.failed++
				tc.Close()
				continue
			}
			s.conns = append(s.conns, tc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range s.conns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			// Whatever the server answers, the connection ends when the
			// read ends; a server that never answers keeps it until Close.
			var b [512]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					select {
					case <-s.stop:
					default:
						s.cut.Add(1)
					}
					return
				}
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		end := time.After(lifetime)
		for {
			select {
			case <-s.stop:
				return
			case <-end:
				return
			case <-t.C:
				for _, c := range s.conns {
					_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					_, _ = c.Write([]byte("X")) // a header name that never ends
				}
			}
		}
	}()
	return s, nil
}

// opened returns the connections that were established.
func (s *slowloris) opened() int { return len(s.conns) }

// close resets every connection and waits for the client's goroutines.
func (s *slowloris) close() {
	s.closed.Do(func() {
		close(s.stop)
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.wg.Wait()
	})
}

// TestSlowlorisSecondHostServed holds more connections to port 80 than the
// telescope's --max-conns from one address of the scanner namespace, each
// a slowloris (the start of an HTTP request, then a byte every second,
// under the HTTP handler's per-read timeout), and checks that another address still completes an HTTP
// exchange with curl that the telescope answers and records as an http
// session. Without a read budget that cuts requests that never complete,
// the slowloris holds every slot until --total-timeout (2 min) and curl
// gets no answer; with per-source caps it gets its share only; either way
// the second host must be served, and the telescope must have cut
// slowloris connections.
func TestSlowlorisSecondHostServed(t *testing.T) {
	const (
		maxConns = 64
		holders  = 100 // more than maxConns: without budgets nothing is left
	)
	l := e2eNewLab(t, lab.Config{}, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range []netip.Addr{slowlorisAddr4, secondHostAddr4} {
		if err := labAddScannerAddr(ctx, l, a); err != nil {
			t.Fatal(err)
		}
	}
	tel := e2eStartTelescope(t, l, "--max-conns", strconv.Itoa(maxConns))

	target := netip.MustParseAddrPort("198.51.100.80:80")
	slow, err := startSlowloris(l.Scanner, slowlorisAddr4, target, holders, time.Second, 90*time.Second)
	if err != nil {
		t.Fatalf("slowloris: %v", err)
	}
	t.Cleanup(slow.close)
	t.Logf("slowloris: %d connections open from %s, %d dials failed", slow.opened(), slowlorisAddr4, slow.failed)
	if slow.opened() <= maxConns {
		t.Fatalf("slowloris opened %d connections, want more than --max-conns %d", slow.opened(), maxConns)
	}
	// Let the slowloris take the slots and trickle before the second host
	// comes.
	time.Sleep(3 * time.Second)

	out, _, code := e2eExec(t, l, l.Scanner, 75*time.Second, nil, "curl", "-sS", "--noproxy", "*",
		"--interface", secondHostAddr4.String(), "--max-time", "70", "-o", "/dev/null", "-w", "%{http_code}",
		"http://"+target.String()+"/")
	if code != 0 || out == "000" {
		t.Errorf("curl from %s: exit %d, status %q: the second host was not served", secondHostAddr4, code, out)
	}
	if slow.cut.Load() == 0 {
		// The budget is not a timing: it must have ended some slowloris
		// connections by now, at least those that held slots first.
		deadline := time.Now().Add(30 * time.Second)
		for slow.cut.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	cut := slow.cut.Load()
	t.Logf("slowloris: %d of %d connections cut by the telescope", cut, slow.opened())
	if cut == 0 {
		t.Errorf("the telescope cut none of the %d slowloris connections", slow.opened())
	}
	slow.close()
	time.Sleep(500 * time.Millisecond)
	output := tel.stop(t)

	found := false
	for _, e := range e2eReadEvents(t, tel.logDir) {
		if e.EventType == "session" && e.SrcIP == secondHostAddr4 && e.Dest() == target && e.AppProto == "http" {
			found = true
		}
	}
	if !found {
		t.Errorf("no http session event from %s to %s", secondHostAddr4, target)
	}
	stats := e2eStats(t, output, "final")
	if n := e2eStatsValue(t, stats, "budget_request"); n == 0 {
		t.Errorf("final stats: budget_request = 0, want the slowloris connections cut by the request budget")
	}
	t.Logf("final stats: drop_conn_limit=%d budget_request=%d", stats["drop_conn_limit"], stats["budget_request"])
}
