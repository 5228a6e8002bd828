package scenarios

import (
	"encoding/json"
	"net/netip"
)

// jsonNumber is a number as the event reader decodes it.
func jsonNumber(s string) json.Number { return json.Number(s) }

// mustPrefixes parses prefixes.
func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// mustAddr parses an address.
func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
