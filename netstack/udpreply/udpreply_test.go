package udpreply

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	local   = netip.MustParseAddr("198.51.100.7")
	testNow = time.Date(2026, 12, 1, 12, 0, 0, 500_000_000, time.UTC)
)

// dnsQueryPacket is a query as dig sends it: id, RD, one question, and an
// EDNS OPT record of 11 bytes (with a cookie option when cookie is set).
func dnsQueryPacket(id uint16, name string, qtype uint16, edns bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x20) // RD, AD
	ar := uint16(0)
	if edns {
		ar = 1
	}
	b = append(b, 0, 1, 0, 0, 0, 0, byte(ar>>8), byte(ar))
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = append(b, 0, 1)
	if edns {
		b = append(b, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0)
	}
	return b
}

// ntpClientPacket is a client request (mode 3) of version v.
func ntpClientPacket(v byte, xmt uint64) []byte {
	b := make([]byte, 48)
	b[0] = v<<3 | 3
	b[2] = 6
	binary.BigEndian.PutUint64(b[40:], xmt)
	return b
}

// monlist is ntpdc's MON_GETLIST_1 request (mode 7, implementation 3,
// request code 42) as the 2014 amplification attacks sent it.
var monlist = append([]byte{0x17, 0x00, 0x03, 0x2a}, make([]byte, 4)...)

const ssdpSearch = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"

const sipOptions = "OPTIONS sip:100@198.51.100.7 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-1234;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: \"sipvicious\"<sip:100@198.51.100.7>\r\n" +
	"From: \"sipvicious\"<sip:100@198.51.100.7>;tag=6434396633623535\r\n" +
	"User-Agent: friendly-scanner\r\n" +
	"Call-ID: 1234567890\r\n" +
	"Contact: sip:100@203.0.113.5:5060\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"Accept: application/sdp\r\n" +
	"Content-Length: 0\r\n\r\n"

// memcachedStatsPacket is the 15-byte request of the 2018 attacks.
var memcachedStatsPacket = []byte("\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n")

// nbstatQuery is nmap's and nbtscan's node status query for "*".
var nbstatQuery = func() []byte {
	b := []byte{0x80, 0xf0, 0x00, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0x20, 'C', 'K'}
	for i := 0; i < 15; i++ {
		b = append(b, 'A', 'A')
	}
	return append(b, 0, 0, 0x21, 0, 1)
}()

// snmpGet is a v2c GetRequest of sysDescr.0, community "public", request
// id 0x1234, as snmpget sends it.
var snmpGet = []byte{
	0x30, 0x27, 0x02, 0x01, 0x01, 0x04, 0x06, 'p', 'u', 'b', 'l', 'i', 'c',
	0xa0, 0x1a, 0x02, 0x02, 0x12, 0x34, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00,
	0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
}

func answer(t *testing.T, port uint16, p []byte) ([]byte, Result) {
	t.Helper()
	out := make([]byte, 2048)
	n, _, res := Answer(out, &Request{Payload: p, Local: local, Port: port, Now: testNow})
	if n > len(p) {
		t.Fatalf("port %d: answer of %d bytes to a request of %d", port, n, len(p))
	}
	return out[:n], res
}

func TestDNSRefused(t *testing.T) {
	q := dnsQueryPacket(0xbeef, "example.com", 1, true)
	a, res := answer(t, PortDNS, q)
	if res != Answered {
		t.Fatalf("result %d, want answered", res)
	}
	if binary.BigEndian.Uint16(a) != 0xbeef {
		t.Errorf("id %x", a[:2])
	}
	flags := binary.BigEndian.Uint16(a[2:])
	if flags&0x8000 == 0 || flags&0xf != 5 || flags&0x0100 == 0 || flags&0x0080 != 0 {
		t.Errorf("flags %04x: want QR, RD echoed, no RA, RCODE 5", flags)
	}
	if qd, an, ns, ar := binary.BigEndian.Uint16(a[4:]), binary.BigEndian.Uint16(a[6:]), binary.BigEndian.Uint16(a[8:]), binary.BigEndian.Uint16(a[10:]); qd != 1 || an+ns+ar != 0 {
		t.Errorf("counts %d %d %d %d, want 1 0 0 0", qd, an, ns, ar)
	}
	if !bytes.Equal(a[12:], q[12:len(q)-11]) {
		t.Errorf("question %x, want %x", a[12:], q[12:len(q)-11])
	}
	for _, bad := range [][]byte{
		a, // a response
		q[:11],
		append(dnsQueryPacket(1, "x", 1, false)[:12], 0xc0, 0x0c, 0, 1, 0, 1), // pointer
	} {
		if _, res := answer(t, PortDNS, bad); res != Malformed {
			t.Errorf("%x: result %d, want malformed", bad, res)
		}
	}
}

func TestNTPServerReply(t *testing.T) {
	q := ntpClientPacket(4, 0x0102030405060708)
	a, res := answer(t, PortNTP, q)
	if res != Answered || len(a) != 48 {
		t.Fatalf("result %d, %d bytes", res, len(a))
	}
	if a[0] != 4<<3|4 || a[1] != 1 {
		t.Errorf("first bytes %x: want version 4 mode 4, stratum 1", a[:2])
	}
	if !bytes.Equal(a[24:32], q[40:48]) {
		t.Errorf("origin %x, want the client's transmit %x", a[24:32], q[40:48])
	}
	sec := binary.BigEndian.Uint32(a[40:]) // transmit
	if got := int64(sec) - ntpEpochOffset; got != testNow.Unix() {
		t.Errorf("transmit seconds %d, want %d", got, testNow.Unix())
	}
	for _, bad := range [][]byte{monlist, append(append([]byte{}, monlist...), make([]byte, 40)...), ntpClientPacket(4, 1)[:47], {0x16, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, res := answer(t, PortNTP, bad); res != Malformed {
			t.Errorf("%x: result %d, want malformed (never answered)", bad, res)
		}
	}
}

func TestSSDPTruncatedToRequest(t *testing.T) {
	a, res := answer(t, PortSSDP, []byte(ssdpSearch))
	if res != Answered {
		t.Fatalf("result %d", res)
	}
	s := string(a)
	if !strings.HasPrefix(s, "HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nLOCATION: http://198.51.100.7:5000/rootDesc.xml\r\n") || !strings.HasSuffix(s, "\r\n\r\n") {
		t.Errorf("answer %q", s)
	}
	long := strings.Replace(ssdpSearch, "MX: 1", "MX: 1\r\nUSER-AGENT: "+strings.Repeat("x", 300), 1)
	if a, _ := answer(t, PortSSDP, []byte(long)); !strings.Contains(string(a), "LOCATION: http://198.51.100.7:5000/rootDesc.xml\r\n") || !strings.Contains(string(a), "SERVER:") || !strings.Contains(string(a), "USN: uuid:") {
		t.Errorf("answer to a long request %q: want every header", a)
	}
	if _, res := answer(t, PortSSDP, []byte("NOTIFY * HTTP/1.1\r\n\r\n")); res != Malformed {
		t.Errorf("NOTIFY: result %d", res)
	}
}

func TestSIPOptions(t *testing.T) {
	a, res := answer(t, PortSIP, []byte(sipOptions))
	if res != Answered {
		t.Fatalf("result %d", res)
	}
	s := string(a)
	for _, want := range []string{"SIP/2.0 200 OK\r\n", "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-1234;rport\r\n",
		"To: \"sipvicious\"<sip:100@198.51.100.7>" + sipTag + "\r\n", "Call-ID: 1234567890\r\n", "CSeq: 1 OPTIONS\r\n", "Content-Length: 0\r\n\r\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("answer %q lacks %q", s, want)
		}
	}
	if _, res := answer(t, PortSIP, []byte(strings.Replace(sipOptions, "OPTIONS sip", "INVITE sip", 1))); res != Malformed {
		t.Errorf("INVITE: result %d", res)
	}
	// Mandatory headers longer than the request leaves room for: refused.
	tiny := "OPTIONS s SIP/2.0\r\nv:a\r\nf:b\r\nt:c\r\ni:d\r\nCSeq:1\r\n\r\n"
	if _, res := answer(t, PortSIP, []byte(tiny)); res != TooLarge {
		t.Errorf("tiny OPTIONS: result %d, want too large", res)
	}
}

func TestMemcachedStatsSmall(t *testing.T) {
	a, res := answer(t, PortMemcached, memcachedStatsPacket)
	if res != Answered || string(a) != "\x00\x01\x00\x00\x00\x01\x00\x00END\r\n" {
		t.Fatalf("result %d answer %q", res, a)
	}
	padded := append(append([]byte{}, memcachedStatsPacket...), make([]byte, 100)...)
	a, _ = answer(t, PortMemcached, padded)
	if !strings.Contains(string(a), "STAT version "+memcachedVersion+"\r\n") || !strings.HasSuffix(string(a), "END\r\n") {
		t.Errorf("answer to a padded stats %q", a)
	}
	if _, res := answer(t, PortMemcached, []byte("\x00\x01\x00\x00\x00\x01\x00\x00set k 0 0 1\r\nx\r\n")); res != Malformed {
		t.Errorf("set: result %d", res)
	}
}

func TestNetBIOSNegative(t *testing.T) {
	a, res := answer(t, PortNetBIOS, nbstatQuery)
	if res != Answered || len(a) != len(nbstatQuery) {
		t.Fatalf("result %d, %d bytes", res, len(a))
	}
	if flags := binary.BigEndian.Uint16(a[2:]); flags&0x8000 == 0 || flags&0xf != 3 || flags&0x0400 == 0 {
		t.Errorf("flags %04x: want R, AA, NAM_ERR", flags)
	}
	if !bytes.Equal(a[:2], nbstatQuery[:2]) || !bytes.Equal(a[12:], nbstatQuery[12:]) {
		t.Errorf("answer %x: id and question not echoed", a)
	}
}

func TestSNMPNoSuchName(t *testing.T) {
	a, res := answer(t, PortSNMP, snmpGet)
	if res != Answered || len(a) != len(snmpGet) {
		t.Fatalf("result %d, %d bytes", res, len(a))
	}
	want := append([]byte{}, snmpGet...)
	want[13] = pduResponse
	want[21], want[24] = snmpNoSuchName, 1
	if !bytes.Equal(a, want) {
		t.Errorf("answer\n %x\nwant\n %x", a, want)
	}
	m, ok := parseSNMP(append(a[:13:13], append([]byte{pduGet}, a[14:]...)...))
	if !ok || m.requestID != 0x1234 || string(m.community) != "public" {
		t.Errorf("answer does not read back: %+v %v", m, ok)
	}
	set := append([]byte{}, snmpGet...)
	set[13] = 0xa3
	v3 := append([]byte{}, snmpGet...)
	v3[4] = 3
	for _, bad := range [][]byte{set, v3, snmpGet[:20]} {
		if _, res := answer(t, PortSNMP, bad); res != Malformed {
			t.Errorf("%x: result %d, want malformed", bad, res)
		}
	}
}

func TestOtherPortsNothing(t *testing.T) {
	for _, port := range []uint16{0, 19, 69, 111, 389, 500, 1434, 5353, 11212} {
		if n, svc, res := Answer(make([]byte, 64), &Request{Payload: []byte("anything at all"), Port: port}); n != 0 || svc != None || res != NoService {
			t.Errorf("port %d: %d bytes, service %v, result %d", port, n, svc, res)
		}
	}
}

// TestAnswerAllocatesNothing: the answer path of every service allocates
// nothing.
func TestAnswerAllocatesNothing(t *testing.T) {
	out := make([]byte, 1500)
	for _, c := range seeds() {
		r := Request{Payload: c.p, Local: local, Port: c.port, Now: testNow}
		if a := testing.AllocsPerRun(100, func() { Answer(out, &r) }); a != 0 {
			t.Errorf("port %d: %.1f allocations per answer", c.port, a)
		}
	}
}

func TestFieldsAreJSON(t *testing.T) {
	for _, c := range seeds() {
		f := AppendFields(nil, c.port, c.p)
		var v map[string]any
		if err := json.Unmarshal(append(append([]byte{'{'}, f...), '}'), &v); err != nil {
			t.Fatalf("port %d: %s: %v", c.port, f, err)
		}
		if d, ok := v[ServiceOf(c.port).String()].(map[string]any); !ok || d["parsed"] == false {
			t.Errorf("port %d: fields %s not parsed", c.port, f)
		}
	}
	if f := string(AppendFields(nil, PortDNS, []byte{1, 2})); f != `"service":"dns","dns":{"parsed":false}` {
		t.Errorf("unparsed dns: %s", f)
	}
	got := string(AppendFields(nil, PortSNMP, snmpGet))
	if !strings.Contains(got, `"community":"public"`) || !strings.Contains(got, `"oids":["1.3.6.1.2.1.1.1.0"]`) || !strings.Contains(got, `"request_id":4660`) {
		t.Errorf("snmp fields %s", got)
	}
	got = string(AppendFields(nil, PortDNS, dnsQueryPacket(7, "version.bind", 16, false)))
	if !strings.Contains(got, `"qname":"version.bind","qtype":16,"qtype_name":"TXT"`) {
		t.Errorf("dns fields %s", got)
	}
}

type seed struct {
	port uint16
	p    []byte
}

func seeds() []seed {
	return []seed{
		{PortDNS, dnsQueryPacket(0x1234, "example.com", 1, true)},
		{PortDNS, dnsQueryPacket(0, "version.bind", 16, false)},
		{PortNTP, ntpClientPacket(4, 0xe8f1a2b3c4d5e6f7)},
		{PortNTP, ntpClientPacket(3, 0)},
		{PortSSDP, []byte(ssdpSearch)},
		{PortSIP, []byte(sipOptions)},
		{PortMemcached, memcachedStatsPacket},
		{PortNetBIOS, nbstatQuery},
		{PortSNMP, snmpGet},
	}
}
