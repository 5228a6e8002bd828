package netstack

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// The SYN cookie is gVisor's own (transport/tcp/accept.go, createCookie and
// isCookieValid): the front end mints cookies that gVisor's listener later
// validates, so both must agree bit for bit. TestGVisorCookieCompat pins
// this; if a gVisor update changes the format, that test fails.
const (
	cookieTSBits   = 8
	cookieTSMask   = 1<<cookieTSBits - 1
	cookieTSOffset = 24
	cookieHashMask = 1<<cookieTSOffset - 1
	// cookieMaxTSDiff is how many 64 s ticks old a cookie may be: gVisor
	// accepts cookies 128 to 192 s old.
	cookieMaxTSDiff = 2
	nonceBytes      = sha1.BlockSize
)

// mssTable is gVisor's: two bits of the cookie select the client's MSS.
var mssTable = [...]uint16{536, 1300, 1440, 1460}

func encodeMSS(mss uint16) uint32 {
	for i := len(mssTable) - 1; i > 0; i-- {
		if mss >= mssTable[i] {
			return uint32(i)
		}
	}
	return 0
}

// cookieJar mints and checks SYN cookies with one secret shared by every
// listener gVisor creates (injected through nonceRNG).
type cookieJar struct {
	nonce [2][nonceBytes]byte
	clock tcpip.Clock
}

func newCookieJar(clock tcpip.Clock) (*cookieJar, error) {
	j := &cookieJar{clock: clock}
	for i := range j.nonce {
		if _, err := io.ReadFull(rand.Reader, j.nonce[i][:]); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// timeStamp is gVisor's 8-bit cookie clock with 64 s ticks.
func (j *cookieJar) timeStamp() uint32 {
	return uint32(j.clock.NowMonotonic().Sub(tcpip.MonotonicTime{}).Seconds()) >> 6 & cookieTSMask
}

// hash is the first four bytes of SHA-1(lport‖rport‖ts‖nonce[i]‖laddr‖raddr).
// Local is the telescope side (the SYN's destination).
func (j *cookieJar) hash(laddr, raddr []byte, lport, rport uint16, ts uint32, i int) uint32 {
	var buf [8 + nonceBytes + 32]byte
	binary.BigEndian.PutUint16(buf[0:], lport)
	binary.BigEndian.PutUint16(buf[2:], rport)
	binary.BigEndian.PutUint32(buf[4:], ts)
	n := 8 + copy(buf[8:], j.nonce[i][:])
	n += copy(buf[n:], laddr)
	n += copy(buf[n:], raddr)
	sum := sha1.Sum(buf[:n])
	return binary.BigEndian.Uint32(sum[:4])
}

// create returns the cookie for a SYN with sequence number seq carrying
// MSS index data (0-3).
func (j *cookieJar) create(laddr, raddr []byte, lport, rport uint16, seq, data uint32) uint32 {
	return j.mint(laddr, raddr, lport, rport, seq, data, j.timeStamp())
}

// mint is create at the cookie clock's tick ts (timeStamp), read by the
// caller.
func (j *cookieJar) mint(laddr, raddr []byte, lport, rport uint16, seq, data, ts uint32) uint32 {
	v := j.hash(laddr, raddr, lport, rport, 0, 0) + seq + ts<<cookieTSOffset
	v += (j.hash(laddr, raddr, lport, rport, ts, 1) + data) & cookieHashMask
	return v
}

// valid reports whether cookie (the ACK's ack-1) is one this jar minted for
// the SYN whose sequence number was seq (the ACK's seq-1), and is fresh.
func (j *cookieJar) valid(laddr, raddr []byte, lport, rport uint16, cookie, seq uint32) bool {
	var data uint32
	return j.check(laddr, raddr, lport, rport, cookie, seq, &data)
}

// check is valid that also stores the cookie's data (the MSS index, and
// the window scale bit of encodeCookieData) in *data.
func (j *cookieJar) check(laddr, raddr []byte, lport, rport uint16, cookie, seq uint32, data *uint32) bool {
	ts := j.timeStamp()
	v := cookie - j.hash(laddr, raddr, lport, rport, 0, 0) - seq
	cookieTS := v >> cookieTSOffset
	if (ts-cookieTS)&cookieTSMask > cookieMaxTSDiff {
		return false
	}
	*data = (v - j.hash(laddr, raddr, lport, rport, cookieTS, 1)) & cookieHashMask
	return int(*data) < len(mssTable)
}

// errNonceUnread means gVisor's listener did not read the injected nonce as
// expected: its cookie code changed and the front end's cookies would be
// rejected. It is fatal for the listener.
var errNonceUnread = errors.New("netstack: listener did not consume the injected cookie nonce")

// nonceRNG is the stack's SecureRNG. It reads crypto/rand, except while a
// listener is being created: then it hands out the jar's nonce, which
// gVisor's newListenContext reads as its cookie secret
// (transport/tcp/accept.go). Listener creation is serialised by mu, and no
// other gVisor code reads SecureRNG while packets flow (only stack
// initialisation, ephemeral ports and listeners do).
type nonceRNG struct {
	mu      sync.Mutex
	pending []byte
}

// Read implements io.Reader.
func (r *nonceRNG) Read(p []byte) (int, error) {
	r.mu.Lock()
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		r.mu.Unlock()
		return n, nil
	}
	r.mu.Unlock()
	return rand.Read(p)
}

// inject makes the next reads return the jar's nonce and calls listen, then
// checks that exactly the nonce was consumed.
func (r *nonceRNG) inject(j *cookieJar, tamper func([]byte), listen func() error) error {
	var secret [2 * nonceBytes]byte
	copy(secret[:], j.nonce[0][:])
	copy(secret[nonceBytes:], j.nonce[1][:])
	if tamper != nil {
		tamper(secret[:])
	}
	r.mu.Lock()
	r.pending = secret[:]
	r.mu.Unlock()
	err := listen()
	r.mu.Lock()
	left := len(r.pending)
	r.pending = nil
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if left != 0 {
		return errNonceUnread
	}
	return nil
}
