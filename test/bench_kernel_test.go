//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/lab"
)

// benchKernelSysctl are the telescope namespace's settings for the kernel
// responder: a SYN cookie for every SYN (2: always, not only when the SYN
// queue overflows, so that no request socket is ever kept) and large
// queues, so that nothing but the CPU bounds the kernel. They are per
// network namespace and do not touch the forwarding path the TUN designs
// use.
var benchKernelSysctl = map[string]string{
	"net/ipv4/tcp_syncookies":      "2",
	"net/ipv4/tcp_max_syn_backlog": "65536",
	"net/core/somaxconn":           "65535",
}

// benchKernelSysctls writes benchKernelSysctl in the telescope namespace.
func benchKernelSysctls(l *lab.Lab) error {
	return lab.InNetns(l.Telescope, func() error {
		for k, v := range benchKernelSysctl {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", strings.ReplaceAll(k, "/", "."), v, l.Telescope, err)
			}
		}
		return nil
	})
}

// benchTcpExt reads one TcpExt counter (nstat's TcpExtNAME) of the telescope
// namespace.
func benchTcpExt(l *lab.Lab, name string) (uint64, error) {
	var v uint64
	err := lab.InNetns(l.Telescope, func() error {
		// thread-self: /proc/self/net would be the main thread's namespace.
		b, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		var keys []string
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] != "TcpExt:" {
				continue
			}
			if keys == nil {
				keys = f
				continue
			}
			i := slices.Index(keys, name)
			if i < 1 || i >= len(f) {
				return fmt.Errorf("no TcpExt %s in /proc/net/netstat", name)
			}
			v, err = strconv.ParseUint(f[i], 10, 64)
			return err
		}
		return fmt.Errorf("no TcpExt lines in /proc/net/netstat")
	})
	return v, err
}

// benchRunKernel measures the kernel's own SYN-cookie responder under the
// same flood as benchRun's designs: for the run the telescope namespace
// holds the prefix as a local route on lo (AnyIP: every address of it is
// the host's own) and a listener on benchPort, opened in-process in that
// namespace, so there is no responder process; its SYN-ACKs leave towards
// the sink like the TUN designs' do. Its SYN-ACKs are TcpExtSyncookiesSent
// (what it produced, as a TUN's RX packets are what a program wrote; the
// TX packets of the telescope's sink link, what left the host, can be
// fewer when the CPU's backlog is full), the SYNs handed to it the RX
// packets of its uplink (RX dropped: the backlog was full). The kernel's work is softirq, charged to whichever
// process or core it interrupts, so it has no CPU or RSS of its own: box%
// is its figure.
func benchRunKernel(ctx context.Context, b *testing.B, l *lab.Lab, bin string, rc benchRunConfig, res benchResult) (benchResult, error) {
	prefix := lab.Prefix4.String()
	if out, err := l.Command(ctx, l.Telescope, "ip", "route", "add", "local", prefix, "dev", "lo").CombinedOutput(); err != nil {
		return res, fmt.Errorf("ip route add local %s dev lo: %w: %s", prefix, err, bytes.TrimSpace(out))
	}
	defer func() {
		if out, err := l.Command(context.Background(), l.Telescope, "ip", "route", "del", "local", prefix, "dev", "lo").CombinedOutput(); err != nil {
			b.Errorf("ip route del local %s dev lo: %v: %s", prefix, err, bytes.TrimSpace(out))
		}
	}()
	var ln net.Listener
	if err := lab.InNetns(l.Telescope, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", benchPort))
		return err
	}); err != nil {
		return res, fmt.Errorf("listener in %s: %w", l.Telescope, err)
	}
	defer ln.Close()
	res.pidChecked = true // no process to check

	smp, err := benchNewSampler(l, l.TelescopeSinkIface, 0)
	if err != nil {
		return res, err
	}
	defer smp.close()
	smp.kernelUplink, smp.lab = l.TelescopeIface, l
	sinkBefore, _ := smp.linkStats(smp.sinkH, l.SinkIface)
	before, err := smp.read()
	if err != nil {
		return res, err
	}
	sampler := startBenchSampling(smp.read, before)
	ferr := benchFlood(l, bin, rc, &res)
	if ferr == nil {
		time.Sleep(benchDrain)
	}
	samples := sampler.finish()
	if ferr != nil {
		return res, ferr
	}
	drained, err := smp.read()
	if err != nil {
		return res, err
	}
	sinkAfter, _ := smp.linkStats(smp.sinkH, l.SinkIface)

	during := append(slices.Clone(samples), drained)
	res.synacks = drained.tunRx - before.tunRx
	res.handed = drained.tunTx - before.tunTx
	res.tunDrops = drained.tunTxDropped - before.tunTxDropped
	res.sinkRx = sinkAfter - sinkBefore
	res.kernelOut = drained.kernelOut - before.kernelOut
	res.meanPPS = float64(res.synacks) / res.floodElapsed.Seconds()
	res.peakPPS = benchPeak(during)
	if dt := drained.boxTotal - before.boxTotal; dt > 0 {
		res.boxBusy = float64(drained.boxBusy-before.boxBusy) / float64(dt)
	}
	return res, nil
}
