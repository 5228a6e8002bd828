// Package netstack is the telescope's TCP/IP stack: a stateless SYN-cookie
// front end in front of a gVisor netstack, on a tun.Device.
//
// Packets flow TUN → tunLink (one inline reader per TUN queue, so the
// kernel's bounded TUN queue is the only buffer) → the front end → gVisor →
// the connection handler (Config.Handle), and back. The front end, a
// pass-through link endpoint, decides for every packet:
//
//   - a SYN to any address of the prefixes and any port 1-65535 gets one
//     SYN-ACK carrying a cookie, written straight to the TUN, within its
//     source's SYN-ACK budget (Config.SYNACKLimits); gVisor never sees it,
//     no state is created and nothing is retransmitted;
//   - an ACK whose cookie is valid (and fresh) is passed to gVisor, whose
//     lazily created wildcard listener for that port validates its own
//     cookie (the translation below) and builds a real established
//     endpoint (data on the ACK is
//     delivered); over Config.MaxConns open connections, or over the
//     share of its remote address (MaxConnsPerIP) or /24 or /48
//     (MaxConnsPerNet), it is dropped. Listeners are closed once idle, at
//     most MaxListeners are open (see listener);
//   - segments of established connections go to gVisor, translated;
//   - everything else (bad-cookie ACKs, SYN-ACK and RST backscatter, port
//     0, addresses outside the prefixes, invalid flag combinations, SYNs
//     from sources no reply may go to or over their budget, UDP, ICMP,
//     fragments, IPv6 routing headers, bad checksums) is recorded and
//     dropped without a reply.
//
// Each of these increments one counter of Stats. Every packet read is handed
// to Config.Sink as a records.Packet, every packet written as a
// records.Reply; the sink must not block.
//
// The front end and gVisor must agree on the handshake: the front end mints
// cheap cookies (SipHash) in gVisor's layout (transport/tcp/accept.go),
// hands gVisor's listeners a secret through the stack's SecureRNG while
// they are created, and, per admitted handshake, moves the client's
// sequence numbers by the offset that makes its cookie the one gVisor's
// formula gives under that secret (cookieJar.translate).
// TestGVisorCookieCompat pins both internals and fails, with a negative
// control, if a gVisor update changes them. Closing idle listeners relies on
// gVisor resetting what is in a listener's accept queue when it closes,
// releasing the port at once, and leaving accepted connections alone;
// TestGVisorListenerCloseResets and TestConnSurvivesListenerClose pin that.
// docs/frontend.md explains the design, the cookie format and why each
// TUN queue's reader delivers inline.
package netstack
