// Package test holds spoki's end-to-end tests: the telescope binary run in
// a lab of network namespaces (package lab) and probed from the scanner
// namespace with real kernel clients and Debian tools (curl, nc, openssl,
// ssh, telnet, redis-cli, adb, hping3, zmap, masscan, nmap, tcpdump, ping,
// dig, sntp, snmpget), the
// check of the package dependency table (imports_test.go), the check that
// the documentation cites only what the repository holds (docs_test.go),
// and the flood benchmark (docs/benchmarks.md). It sits outside the packet flow and
// may import every package; it has no code of its own besides the tests.
//
// The lab tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and a built binary
// in SPOKI_BIN (the Makefile exports it). Without them they skip with a
// reason, except under CI=true, where they fail.
package test
