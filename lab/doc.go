// Package lab builds the network namespaces in which spoki is run and tested
// end to end, and holds the clients that probe it from the scanner side.
//
// A lab is two (or three) namespaces created with iproute2: a telescope host,
// which forwards the telescope prefixes to spoki's TUN as an upstream router
// would, and a scanner host joined to it by a veth pair. With Config.Sink a
// third namespace receives, and drops, the SYN-ACKs that the telescope sends
// to the spoofed sources of a flood, so that the flooder never pays for them
// (docs/benchmarks.md#the-set-up). Every name carries a unique prefix and
// Close removes everything, so a lab never collides with another one or
// outlives its user.
//
// Demo and Up are `spoki lab demo` and `spoki lab up`: a lab with spoki
// running in it, probed and checked, or left up for manual use. ReadEvents
// reads the telescope's event log back.
//
// The probes (ProbeHTTP, ProbeLine, ProbeSYN, Flood) are the project's own
// clients. They run inside the scanner namespace, normally as
// `ip netns exec SCAN spoki probe ...`; ProbeSYN and Flood can also open
// their sockets in a named namespace themselves (the Netns fields), which is
// what in-process tests use.
//
// The package sits outside the packet flow: it imports nothing of spoki and
// talks to the telescope only over the wire and through its log files.
package lab
