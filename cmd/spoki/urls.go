package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spoki-telescope/spoki/analysis/urls"
)

const urlsUsage = `usage: spoki urls [--hex] [PAYLOAD ...]

Prints the downloader URLs in each payload, one line per URL:
tool|url|server|port|name, with control bytes escaped (\x1b). Without
arguments it reads one payload per line from stdin.`

// urlsMain is `spoki urls`.
func urlsMain(_ context.Context, args []string) error {
	fs := newFlagSet("urls", urlsUsage)
	isHex := fs.Bool("hex", false, "payloads are hex-encoded (as in the raw log's payload column)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if fs.NArg() > 0 {
		for _, p := range fs.Args() {
			if err := printURLs(w, p, *isHex); err != nil {
				return err
			}
		}
		return nil
	}
	return scanURLs(os.Stdin, w, *isHex)
}

// scanURLs reads one payload per line; lines may be long (request bodies).
func scanURLs(r io.Reader, w *bufio.Writer, isHex bool) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			if perr := printURLs(w, strings.TrimRight(line, "\r\n"), isHex); perr != nil {
				return perr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("urls: read stdin: %w", err)
		}
	}
}

func printURLs(w *bufio.Writer, p string, isHex bool) error {
	b := []byte(p)
	if isHex {
		var err error
		if b, err = hex.DecodeString(strings.TrimSpace(p)); err != nil {
			// One bad line must not stop a stream of payloads.
			fmt.Fprintf(os.Stderr, "spoki urls: skipping a payload that is not hex: %v\n", err)
			return nil
		}
	}
	for _, d := range urls.Extract(b) {
		// The URL and the name are the attacker's bytes.
		if _, err := fmt.Fprintln(w, termSafe(d.String())); err != nil {
			return fmt.Errorf("urls: write: %w", err)
		}
	}
	return nil
}
