package netstack

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/dchest/siphash"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The SYN cookie has gVisor's layout (transport/tcp/accept.go,
// createCookie and isCookieValid): v = H0 + seq + ts<<24 +
// ((H1(ts) + data) & 0xffffff), with an 8-bit clock of 64 s ticks and two
// bits of data. The front end's H0 and H1 are SipHash-2-4 under a random
// key of the jar (mint, check): two short SipHash per SYN instead of the
// four SHA-1 blocks of gVisor's. gVisor's listener still validates every
// handshake with its own hashes (SHA-1 under the nonce the jar hands it),
// so the front end translates the client's sequence space of each admitted
// connection by the offset that makes our cookie one of gVisor's
// (translate, and Stack.toStack and Stack.replyOut): SHA-1 is computed once
// per completed handshake, never per SYN. TestGVisorCookieCompat pins the
// translation to gVisor's real listener; if a gVisor update changes its
// format, that test fails.
const (
	cookieTSBits   = 8
	cookieTSMask   = 1<<cookieTSBits - 1
	cookieTSOffset = 24
	cookieHashMask = 1<<cookieTSOffset - 1
	// cookieMaxTSDiff is how many 64 s ticks old a cookie may be: gVisor
	// accepts cookies 128 to 192 s old, and so does the front end.
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

// cookieJar mints and checks SYN cookies under its SipHash key, and holds
// the secret shared by every listener gVisor creates (injected through
// nonceRNG), with which it translates an admitted handshake into gVisor's
// cookie (translate).
type cookieJar struct {
	// key is the SipHash-2-4 key of the front end's cookies.
	key [2]uint64
	// nonce is gVisor's cookie secret (its listeners' nonce).
	nonce [2][nonceBytes]byte
	clock tcpip.Clock
}

func newCookieJar(clock tcpip.Clock) (*cookieJar, error) {
	j := &cookieJar{clock: clock}
	var key [16]byte
	if _, err := io.ReadFull(rand.Reader, key[:]); err != nil {
		return nil, err
	}
	j.key[0] = binary.LittleEndian.Uint64(key[:8])
	j.key[1] = binary.LittleEndian.Uint64(key[8:])
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

// sipInput is the message of the front end's hashes, built once for both:
// laddr‖raddr‖lport‖rport, 12 bytes (IPv4) or 36 (IPv6), and one byte of
// room for the tick. Local is the telescope side (the SYN's destination).
type sipInput struct {
	buf [2*16 + 5]byte
	n   int
}

func (in *sipInput) set(laddr, raddr []byte, lport, rport uint16) {
	n := copy(in.buf[:], laddr)
	n += copy(in.buf[n:], raddr)
	binary.BigEndian.PutUint16(in.buf[n:], lport)
	binary.BigEndian.PutUint16(in.buf[n+2:], rport)
	in.n = n + 4
}

// h0 is the front end's H0: the low 32 bits of SipHash-2-4 of the message
// under the jar's key.
func (j *cookieJar) h0(in *sipInput) uint32 {
	return uint32(siphash.Hash(j.key[0], j.key[1], in.buf[:in.n]))
}

// h1 is H1 at tick ts: the same over the message and ts's byte. SipHash's
// length byte keeps H0's message apart from every H1's.
func (j *cookieJar) h1(in *sipInput, ts uint32) uint32 {
	in.buf[in.n] = byte(ts)
	return uint32(siphash.Hash(j.key[0], j.key[1], in.buf[:in.n+1]))
}

// gvisorHash is gVisor's cookieHash: the first four bytes of
// SHA-1(lport‖rport‖ts‖nonce[i]‖laddr‖raddr).
func (j *cookieJar) gvisorHash(laddr, raddr []byte, lport, rport uint16, ts uint32, i int) uint32 {
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
// data (the MSS index, and the window scale bit of encodeCookieData).
func (j *cookieJar) create(laddr, raddr []byte, lport, rport uint16, seq, data uint32) uint32 {
	return j.mint(laddr, raddr, lport, rport, seq, data, j.timeStamp())
}

// mint is create at the cookie clock's tick ts (timeStamp), read by the
// caller.
func (j *cookieJar) mint(laddr, raddr []byte, lport, rport uint16, seq, data, ts uint32) uint32 {
	var in sipInput
	in.set(laddr, raddr, lport, rport)
	v := j.h0(&in) + seq + ts<<cookieTSOffset
	v += (j.h1(&in, ts) + data) & cookieHashMask
	return v
}

// valid reports whether cookie (the ACK's ack-1) is one this jar minted for
// the SYN whose sequence number was seq (the ACK's seq-1), and is fresh.
func (j *cookieJar) valid(laddr, raddr []byte, lport, rport uint16, cookie, seq uint32) bool {
	var data uint32
	return j.check(laddr, raddr, lport, rport, cookie, seq, &data)
}

// check is valid that also stores the cookie's data in *data. As gVisor's
// listener does, it accepts a cookie whose data is an MSS index (0-3).
func (j *cookieJar) check(laddr, raddr []byte, lport, rport uint16, cookie, seq uint32, data *uint32) bool {
	ts := j.timeStamp()
	var in sipInput
	in.set(laddr, raddr, lport, rport)
	v := cookie - j.h0(&in) - seq
	cookieTS := v >> cookieTSOffset
	if (ts-cookieTS)&cookieTSMask > cookieMaxTSDiff {
		return false
	}
	*data = (v - j.h1(&in, cookieTS)) & cookieHashMask
	return int(*data) < len(mssTable)
}

// gvisorCookie is gVisor's createCookie with the jar's nonce at tick ts:
// the cookie gVisor's listener would have minted for a SYN with sequence
// number seq.
func (j *cookieJar) gvisorCookie(laddr, raddr []byte, lport, rport uint16, seq, data, ts uint32) uint32 {
	v := j.gvisorHash(laddr, raddr, lport, rport, 0, 0) + seq + ts<<cookieTSOffset
	v += (j.gvisorHash(laddr, raddr, lport, rport, ts, 1) + data) & cookieHashMask
	return v
}

// translate returns the offset delta that makes the front end's cookie one
// of gVisor's: gVisor's listener takes iss = ack-1 (the cookie, which the
// client knows and we cannot change) and irs = seq-1, so the client's side
// moves instead: with irs' = irs + delta, gVisor's isCookieValid(cookie,
// irs') holds and yields data. Every segment of the connection from the
// client reaches gVisor with seq + delta, and every ACK gVisor sends
// leaves with ack - delta (Stack.toStack, Stack.replyOut). The tick is the
// clock's now, not the cookie's, so that gVisor's own freshness check,
// which reads the clock later, has the whole 128 s ahead of it.
func (j *cookieJar) translate(laddr, raddr []byte, lport, rport uint16, cookie, irs, data uint32) (delta uint32) {
	ts := j.timeStamp()
	irs2 := cookie - j.gvisorHash(laddr, raddr, lport, rport, 0, 0) - ts<<cookieTSOffset
	irs2 -= (j.gvisorHash(laddr, raddr, lport, rport, ts, 1) + data) & cookieHashMask
	return irs2 - irs
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
