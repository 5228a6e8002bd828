package config

import (
	"fmt"
	"strings"

	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/tun"
)

// Personas returns the SYN-ACK personas of the settings (netstack.Persona):
// --persona for every prefix, and the persona-prefix entries
// ("CIDR=NAME", the most specific prefix wins) for parts of them.
func (c *Run) Personas() (def *netstack.Persona, byPrefix []netstack.PersonaPrefix, err error) {
	def, err = netstack.LookupPersona(c.Persona)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range c.PersonaPrefixes {
		pp, err := parsePersonaPrefix(s)
		if err != nil {
			return nil, nil, err
		}
		byPrefix = append(byPrefix, pp)
	}
	return def, byPrefix, nil
}

// parsePersonaPrefix parses one persona-prefix entry, CIDR=NAME.
func parsePersonaPrefix(s string) (netstack.PersonaPrefix, error) {
	cidr, name, ok := strings.Cut(s, "=")
	if !ok {
		return netstack.PersonaPrefix{}, fmt.Errorf("%q is not CIDR=NAME", s)
	}
	p, err := tun.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return netstack.PersonaPrefix{}, err
	}
	persona, err := netstack.LookupPersona(strings.TrimSpace(name))
	if err != nil {
		return netstack.PersonaPrefix{}, err
	}
	return netstack.PersonaPrefix{Prefix: p, Persona: persona}, nil
}

// checkPersonaPrefixes is the rule of persona-prefix: each entry parses,
// and its prefix lies inside a telescope prefix (a persona for addresses
// the telescope never answers is a typo).
func (c *Run) checkPersonaPrefixes() error {
	telescope, err := telescopePrefixes(c.Prefixes)
	if err != nil {
		telescope = nil // the prefix rule reports it
	}
	for _, s := range c.PersonaPrefixes {
		pp, err := parsePersonaPrefix(s)
		if err != nil {
			return err
		}
		if len(telescope) == 0 {
			continue
		}
		inside := false
		for _, q := range telescope {
			if q.Bits() <= pp.Prefix.Bits() && q.Contains(pp.Prefix.Addr()) {
				inside = true
			}
		}
		if !inside {
			return fmt.Errorf("%s lies outside the telescope prefixes", pp.Prefix)
		}
	}
	return nil
}
