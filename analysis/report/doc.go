// Package report computes spoki's summary of a telescope's traffic: the top
// ports per category with the known scanners set apart (Spoki's topports),
// the contact types of the two-phase events (Spoki's contact-types and
// aggregate-ct), and the delay between the two
// phases. It reads the assemble output or spoki's live event log and
// writes a text table and a self-contained HTML page with the same numbers.
// It sits at the end of the data flow and imports nothing of spoki but
// analysis/download (input files) and analysis/urls (downloader test).
//
// # Inputs
//
// Assemble output (TAG-events-*.json.gz): every record is counted as
// topports counts it: tags isyn and "isyn (acked)" count the isyn slot's
// dport in "is", rsyn and "rsyn (acked)" the rsyn slot's in "rs",
// "two-phase" and "two-phase (no ack)" the isyn slot's in "tp"; a known
// scanner's saddr raises the category's excluded-scanner counter instead;
// other tags are counted as errors. Contact types and the delay come from
// the two-phase records (the delay is the rsyn's time minus the isyn's,
// in seconds).
//
// Event log (TAG.events.*.jsonl[.gz]): the log has no probe confirmations,
// so the two phases are paired here, approximately: an irregular `syn`
// followed by a regular `syn` of the same source, destination address and
// port within Config.PhaseTimeout is one two-phase event (delay = the
// difference of the two SYN times); other irregular SYNs count in "is",
// other regular SYNs in "rs". The contact type of a two-phase event is
// taken from the `session` event of the regular SYN's connection (same
// four-tuple): none → without-ack, an empty payload → without-payload,
// otherwise with-payload and classified. Other event types are ignored.
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
//   - Contact types: the rack's payload, if the record has none, is looked
//     up in the raw log of the record file's hour only with Config.RawDir
//     (as contact-types' -r); without it such events count as
//     without-payload. A payload is classified hex if it is not UTF-8,
//     downloader if urls.Extract finds a URL (the original uses its
//     older extract_url), ascii otherwise.
//   - Output: no JSON/CSV/PDF files; a text table on stdout (the
//     original's report lines: excluded scanners, total, top N as port,
//     count, share%, number of ports targeted; shares rounded to 2
//     decimals and printed as Python prints a float) and one HTML page.
//
// The HTML page embeds its data as JSON and draws the charts as inline SVG
// with inline JavaScript; it loads nothing from anywhere. Every bar carries
// data-chart, data-label and data-value attributes, so that a test can read
// the rendered numbers back from the DOM.
package report
