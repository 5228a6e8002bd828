// Package download is Spoki's malware `download` step (spoki-eval §3.3)
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
// reading); redirects are capped (Config.MaxRedirects); addresses in
// Config.Deny are refused at dial time, which also covers DNS names and
// redirect targets. Each URL ends with exactly one Result whose Status
// says what happened.
//
// # Deviations from the original (spoki-eval §3.3, §7)
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
//     network) becomes Config.Deny: remote addresses in these prefixes are
//     refused for IP literals, names and redirects alike.
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
