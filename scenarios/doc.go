// Package scenarios runs scripted TCP exchanges against a live telescope, in
// the spirit of packetdrill: a scenario file reads like the packets it sends
// and expects, one line per packet (README.md describes the syntax).
//
// The package sits beside the packet flow, on the scanner's side of the
// wire: it crafts IPv4 and IPv6 TCP packets with gopacket's layers, sends
// them through an AF_PACKET socket on the scanner host, captures the
// telescope's answers on the same socket, and reads the telescope's event
// log to check what it recorded. It imports nothing of spoki; entering the scanner's network namespace is the caller's job
// (cmd/spoki does it with lab.InNetns), so that this package needs no lab.
//
// The pieces:
//
//   - Parse and ParseFile turn a file into a Script, with line-numbered
//     SyntaxErrors;
//   - Runner executes Scripts over a Wire (OpenWire: AF_PACKET plus the
//     routing set-up that keeps the scanner kernel from answering with
//     RSTs) and an EventSource (LogDir), printing one pass or fail line per
//     step;
//   - Replay sends the client side of a pcap capture into the prefixes;
//   - Builtin holds the built-in scenarios, embedded.
package scenarios
