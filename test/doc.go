// Package test holds spoki's end-to-end tests: the telescope binary run in
// a lab of network namespaces (package lab) and probed from the scanner
// namespace with real kernel clients and Debian tools (curl, nc, openssl,
// hping3, tcpdump), the check of the package dependency table of style.md
// section 7, and the flood benchmarks. It sits outside the packet flow and
// may import every package; it has no code of its own besides the tests.
//
// The lab tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and a built binary
// in SPOKI_BIN (the Makefile exports it). Without them they skip with a
// reason, except under CI=true, where they fail.
package test
