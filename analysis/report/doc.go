// Package report computes spoki's report of a telescope's traffic, the
// numbers a researcher looks at first: tag, time range and inputs; SYNs,
// sources and /24s per hour and the irregular share over time; the scanner
// fingerprints; the top ports per category with the known scanners set
// apart (Spoki's topports); the two-phase events' delay as a CDF on a
// logarithmic axis and their contact types (Spoki's contact-types); the
// top payload prefixes, downloader hosts and file names, credentials, JA4
// and HASSH. Build returns one Report; WriteText, WriteJSON and WriteHTML
// render that one value, so the three outputs cannot disagree. It reads
// files only; of spoki it imports records (classification),
// analysis/download (input files) and analysis/urls (downloader test).
//
// # Inputs
//
// spoki's event log (TAG.events.*.jsonl[.gz]), read through readEvent,
// the one function that knows its field names:
//
//   - `syn`: the time series, totals and fingerprints (its `irregular` and
//     `scanner` fields); the top ports of "is" (irregular) or "rs"
//     (regular) — every SYN counts, phase ones included.
//   - `two_phase` (the live detector's events): stage `phase_two` is one
//     event ("tp" port, delay_ms); stage `acked` carries its session's
//     payload, which gives the contact type (empty: without-payload;
//     else classified). Events without an `acked` line are without-ack.
//   - `session`: connections, payload prefixes, credentials (telnet
//     `credentials`, mqtt and tds `username`/`password`), JA4 (`tls.ja4`),
//     HASSH (`ssh.hassh`).
//   - `downloader`: hosts (`server`) and file names (`name`).
//
// Assemble output (TAG-events-*.json.gz): every record's isyn and rsyn
// slots are SYNs (the irregular rule and the fingerprint are applied to the
// slot's ipid, ttl, snum, window and options, as records.Irregular and
// records.Fingerprint do live); iack and rack slots are connections whose
// payload (hex) gives the prefixes and, through urls.Extract, the
// downloader hosts and names. Ports are counted as topports counts them:
// tags isyn and "isyn (acked)" count the isyn slot's dport in "is", rsyn
// and "rsyn (acked)" the rsyn slot's in "rs", "two-phase" and "two-phase
// (no ack)" the isyn slot's in "tp"; a known scanner's saddr raises the
// category's excluded-scanner counter instead; other tags are parse
// errors. The delay of a two-phase record is the rsyn's time minus the
// isyn's; its contact type comes from the rack (none: without-ack). A
// rack without payload is looked up in the raw log of the record file's
// hour with Config.RawDir (contact-types' -r). A payload is hex if it is
// not UTF-8, downloader if urls.Extract finds a URL, ascii otherwise.
// Credentials, JA4 and HASSH exist in the event log only.
//
// # Bounds
//
// Attackers choose sources, payloads, user names and fingerprints, so
// nothing they send decides the report's memory:
//
//   - Top lists (payload prefixes, hosts, file names, credentials, JA4,
//     HASSH) hold at most Config.TopKeys keys each (Space-Saving: a key
//     with more than total/TopKeys occurrences is always held, a held
//     count exceeds the true one by at most its max_overcount), each key
//     cut to 128 bytes; evictions are counted (TopList.Evicted,
//     Cut.TopKeys).
//   - Distinct sources and /24s (IPv6: /48s) are exact up to 1,024 per
//     counter of the whole run and 256 per hour (sorted hashes, 8 bytes
//     each), then HyperLogLog estimates (4,096 one-byte registers, about
//     1.6% standard error; Estimated says so).
//   - The time series holds at most Config.MaxHours hours; SYNs of later
//     new hours count in the totals and in Cut.HoursSYNs.
//   - Ports are at most 65,536 per category; the delay CDF has 91 fixed
//     bins (10 per decade, 1 ms to 10^6 s) and counts delays above.
//   - The raw-log ACK table (--raw) holds one hour, at most 64Ki ACKs of
//     at most 2 KiB; the rest count in Cut.RawAcks.
//
// At the defaults that is at most about 25 MiB (BenchmarkWorstCaseMemory
// fills every bound: 23 MiB), plus 128 MiB for --raw, whatever the size
// of the input.
//
// # The page
//
// WriteHTML writes a self-contained page: tables and inline SVG charts
// (axes, ticks, labels) drawn in Go, one style sheet allowed by its
// SHA-256 in the page's Content Security Policy (default-src 'none'), no
// script, nothing loaded from anywhere. Each section has an id and each
// total a data-key attribute, so that a test can read the numbers back
// from the DOM.
//
// # Deviations from the original
//
//   - One run over many files instead of one run per hour and an
//     aggregate step; the files are read in the order given (directories
//     sorted by name), without the original's DAYS*24 cap.
//   - Known-scanner lists (DIR/ips.NAME.txt): lines are trimmed (CR
//     included), empty lines and '#' comments skipped, IPv6 addresses and
//     CIDR prefixes accepted, and an empty list does not stop the loading
//     of the others (the original crashes or stops on each of these).
//     The built-in prefixes are checked first, as in the original.
//   - Output: no CSV or PDF files; the text summary holds the original's
//     report lines (excluded scanners, total, top N as port, count,
//     share%, number of ports targeted; shares rounded to 2 decimals and
//     printed as Python prints a float).
package report
