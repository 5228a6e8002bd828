// Package analysis is the root of spoki's analyses of its own logs: the
// offline re-implementation of Spoki's evaluation tool chain and the live
// two-phase matching that shares its rules. It sits at the end of
// the data flow (records → analysis) and imports nothing of spoki but
// records.
//
// The work is done in the sub-packages, one job each:
//
//	analysis/assemble  Spoki's `assemble`: raw + scamper logs → two-phase records
//	analysis/urls      Spoki's `clean`: downloader URLs in payloads
//	analysis/download  Spoki's `download`: fetch and store what the URLs serve
//	analysis/report    the researchers' report (Spoki's topports, contact-types and more), as text, JSON and HTML
//	analysis/twophase  two-phase scans as they happen, with assemble's window
//
// docs/spoki-compat.md#the-evaluation-tool-chain says where each package
// documents what it copies from the original and what it fixes.
package analysis
