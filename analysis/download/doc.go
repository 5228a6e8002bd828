// Package download is Spoki's malware `download` step
// run offline: it reads the payloads of spoki's event log or of the
// assemble output, finds the downloader URLs in them with urls.Extract, and
// fetches each URL at most once per interval into a sample store. It sits at
// the end of the data flow, next to analysis/assemble and analysis/urls, and
// imports nothing of spoki but those.
//
// # The store (the original's layout)
//
//	DIR/malware/SHA256/malware.bin        the body of an HTTP 200, mode 0444, written once
//	DIR/malware/SHA256/downloads.csv.gz   name|url|timestamp|server|tag, one row per success
//	DIR/activity/NAME.YYYY.MM.csv.gz      ts|saddr|daddr|sport|dport|tag|url|rdns|attempted|status|hash
//	DIR/tried.tsv                         the rate limit: UNIX-expiry TAB url (spoki's addition)
//
// The CSV files are gzip, appended to (one gzip member per write), `|`
// separated with CRLF line ends and Python's minimal quoting, with a header
// when the file is created, and booleans written True/False, as Python's
// csv module writes them. NAME is the URL's file name, or the server if the
// URL has none; YYYY.MM is the month of the wall clock.
//
// Nothing fetched is ever executed, parsed or decompressed: the body goes
// to a temporary file in DIR/malware while its SHA-256 is computed, and is
// renamed into place read-only.
//
// # Hostile servers
//
// Every fetch runs under one deadline (Config.Timeout) that covers the
// connect, the TLS handshake, the headers and the whole body, so a server
// that trickles bytes cannot hold the downloader. The body is capped
// (Config.MaxBytes, checked against Content-Length first and then while
// reading); redirects are capped (Config.MaxRedirects). Each URL ends
// with exactly one Result whose Status says what happened.
//
// # Nothing inside is fetched (Policy)
//
// A URL in a payload is the attacker's choice, and a sample is often
// shared with outside services, so by default the downloader connects to
// public unicast addresses only. The check runs in the dialer's Control
// hook, after name resolution and for each connection, so DNS names,
// rebinding and every redirect hop meet it: loopback, unspecified,
// link-local (cloud metadata), RFC 1918, CGNAT, ULA, multicast, reserved,
// documentation and benchmarking ranges (BuiltinDeny), IPv4-mapped
// addresses as the IPv4 address they are, the NAT64, SIIT, 6to4 and
// Teredo forms of those, the telescope's prefixes (Config.Telescope) and
// the host's own addresses are refused. Config.Allow opens exactly the
// ranges given; Config.Deny adds ranges and wins over Allow. Hosts that
// are no DNS name are read as wget and curl read them: inet_aton
// spellings (2130706433, 0x7f000001, 0177.0.0.1, 127.1) are dialled as the
// IPv4 address they spell, without a DNS query, and localhost as
// 127.0.0.1; the check then refuses them like any other address. No proxy
// is used, so the connection goes where the check looked. A refusal is
// KindDenied, with the address and the range in its status and in the
// activity log.
//
// # Bounds
//
// Every piece of state an attacker can grow is bounded and its losses
// counted (Stats, ScanStats, KafkaStats): the URLs taken from one payload
// (ScanConfig.MaxURLsPerPayload), the length of a URL (MaxURLBytes), the
// rate-limit table (Config.MaxState bytes; expired entries leave as the
// run goes, the oldest live ones are evicted beyond the budget),
// DIR/tried.tsv (rewritten from the table whenever it holds more than
// twice the table's lines plus 1024), the sample store (Config.MaxStore),
// and the fetches at once (Pool: Workers overall, PerHost per server,
// a queue of QueuePerWorker per worker before the input waits). Besides
// the samples the store holds the activity logs, one row per URL
// sighting, which grow with the input.
//
// # Deviations from the original
//
//   - Input: files, or Kafka (Consumer, `spoki download --kafka`): the
//     `downloader` events that spoki run publishes, one per URL, read as a
//     consumer group that commits an offset only after the attempt is in
//     the store (the original auto-committed, and started a new group at
//     the latest offset; here a new group starts at the oldest).
//     From files, event-log lines (`syn` and `session` events with a
//     base64 `payload`) and assemble records (the payload hex of `rack`, or
//     of `iack` when rack gives no URL, as `filter` does) are read; the whole payload goes to urls.Extract, which replaces filter's
//     and clean's wget/curl substring tests and their repr round trip.
//     The activity `tag` is the record's tag, or the event type for the
//     event log; `ts` is milliseconds since the epoch in both cases.
//   - The rate limit survives the process: the expiry times are kept in
//     DIR/tried.tsv, so a second run within the hour does not fetch again.
//     As in the original, failures count as tries.
//   - Timeout: the original's 10 s is requests' per-read timeout, which a
//     server that sends one byte every 9 s defeats; here it bounds the
//     whole fetch.
//   - The body is capped (default 32 MiB) and redirects are capped
//     (default 5; requests allows 30); the original has neither.
//   - Any 2xx other than 200 is a status (the original dies on an
//     AssertionError); nothing is stored for it. ≥400 gives requests' text
//     ("404 Client Error: Not Found for url: URL").
//   - Only http and https are fetched; ftp:// and tftp:// URLs (which
//     urls.Extract finds, the original does not) get the status
//     "unsupported scheme" and are not counted as tries.
//   - TLS certificates are verified unless Config.InsecureTLS
//     (--insecure-tls). A telescope usually wants --insecure-tls: malware
//     servers rarely have valid certificates, and the sample is identified
//     by its hash, not by the server's identity. The default stays secure so
//     that the command does what its flags say; the status of a certificate
//     error names the flag.
//   - The original's `inet prefix` rule (a server name whose connection
//     leaves from 141.22.28.0/24, i.e. points into the operator's own
//     network) becomes the Policy: internal, telescope and host addresses
//     are refused for IP literals, names and redirects alike, and
//     Config.Deny adds the operator's networks.
//   - Fetches run in parallel (Pool), and the lines come in the order the
//     fetches end.
//   - rdns (gethostbyaddr of the server) is looked up only with
//     Config.ReverseDNS (--rdns) and only for IP-literal servers, because it
//     sends queries about attackers' addresses to the resolver; the column
//     is empty otherwise.
//   - NAME is sanitised for the file system (characters other than
//     [A-Za-z0-9._-] become '_', a leading '.' is prefixed with '_', at most
//     100 bytes), so a URL cannot name a path outside DIR/activity.
//   - No proxy from the environment is used, responses are not
//     decompressed (the sample is stored as served), and the User-Agent is
//     wget's, since some droppers serve only to wget and curl.
package download
