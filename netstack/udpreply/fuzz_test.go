package udpreply

import (
	"encoding/binary"
	"encoding/json"
	"testing"
)

// fuzzService checks what must hold for any payload to the service's
// port: Answer neither panics nor answers with more bytes than it got, and
// the event's fields are valid JSON. The seeds are in testdata/fuzz.
func fuzzService(f *testing.F, port uint16, check func(t *testing.T, req, ans []byte)) {
	for _, s := range seeds() {
		if s.port == port {
			f.Add(s.p)
		}
	}
	out := make([]byte, 1500)
	f.Fuzz(func(t *testing.T, p []byte) {
		n, svc, res := Answer(out, &Request{Payload: p, Local: local, Port: port, Now: testNow})
		if svc != ServiceOf(port) {
			t.Fatalf("service %v on port %d", svc, port)
		}
		if n > len(p) || (res != Answered && n != 0) {
			t.Fatalf("result %d with %d bytes for a request of %d", res, n, len(p))
		}
		if res == Answered && check != nil {
			check(t, p, out[:n])
		}
		fields := AppendFields(nil, port, p)
		if !json.Valid(append(append([]byte{'{'}, fields...), '}')) {
			t.Fatalf("fields are not JSON: %s", fields)
		}
	})
}

func FuzzDNS(f *testing.F) {
	fuzzService(f, PortDNS, func(t *testing.T, req, ans []byte) {
		if ans[0] != req[0] || ans[1] != req[1] || ans[2]&0x80 == 0 || ans[3]&0xf != 5 {
			t.Fatalf("answer %x is not a REFUSED response to %x", ans, req)
		}
	})
}

func FuzzNTP(f *testing.F) {
	f.Add(monlist)
	fuzzService(f, PortNTP, func(t *testing.T, req, ans []byte) {
		if len(ans) != ntpLen || ans[0]&7 != 4 || req[0]&7 != 3 {
			t.Fatalf("answer %x to %x: want a 48-byte mode-4 reply to mode 3", ans, req)
		}
	})
}

func FuzzSSDP(f *testing.F) { fuzzService(f, PortSSDP, nil) }

func FuzzSIP(f *testing.F) { fuzzService(f, PortSIP, nil) }

func FuzzMemcached(f *testing.F) { fuzzService(f, PortMemcached, nil) }

func FuzzNetBIOS(f *testing.F) {
	fuzzService(f, PortNetBIOS, func(t *testing.T, req, ans []byte) {
		if binary.BigEndian.Uint16(ans[2:])&0x800f != 0x8003 {
			t.Fatalf("answer %x is not a negative response", ans)
		}
	})
}

func FuzzSNMP(f *testing.F) {
	fuzzService(f, PortSNMP, func(t *testing.T, req, ans []byte) {
		m, ok := parseSNMP(req)
		if !ok || len(ans) != m.end || ans[m.pduAt] != pduResponse || ans[m.errStat[1]-1] != snmpNoSuchName {
			t.Fatalf("answer %x to %x: want the request as a noSuchName response", ans, req)
		}
	})
}
