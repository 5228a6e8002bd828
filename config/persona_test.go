package config

import (
	"strings"
	"testing"

	"github.com/spoki-telescope/spoki/netstack"
)

// TestPersonaSettings checks the persona and persona-prefix rules, on the
// flags (Validate) and in a file (Check), and the table they build.
func TestPersonaSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		persona  string
		prefixes []string
		want     string // "" = valid
	}{
		{"default", "plain", nil, ""},
		{"linux everywhere", "linux", nil, ""},
		{"unknown", "solaris", nil, `run: --persona: unknown persona "solaris"`},
		{"per prefix", "linux", []string{"192.0.2.0/25=windows", "192.0.2.128/25=embedded"}, ""},
		{"not CIDR=NAME", "linux", []string{"192.0.2.0/25"}, "run: --persona-prefix \"192.0.2.0/25\" is not CIDR=NAME"},
		{"unknown name", "linux", []string{"192.0.2.0/25=beos"}, `run: --persona-prefix unknown persona "beos"`},
		{"outside", "linux", []string{"203.0.113.0/24=windows"}, "run: --persona-prefix 203.0.113.0/24 lies outside the telescope prefixes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Prefixes = []string{"192.0.2.0/24"}
			c.Persona, c.PersonaPrefixes = tc.persona, tc.prefixes
			_, err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				def, by, err := c.Personas()
				if err != nil || def.Name != tc.persona || len(by) != len(tc.prefixes) {
					t.Fatalf("Personas = %v %v %v", def, by, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	c := Default()
	probs := Check([]byte("prefix: [192.0.2.0/24]\npersona: linux\npersona-prefix:\n  - 192.0.2.0/25=windows\n  - 198.51.100.0/24=embedded\n"), &c, true)
	if len(probs) != 1 || !strings.Contains(probs[0].String(), "persona-prefix: 198.51.100.0/24 lies outside") {
		t.Errorf("Check: %v, want one problem with the outside prefix", probs)
	}
	if c.Persona != netstack.PersonaLinux.Name || len(c.PersonaPrefixes) != 2 {
		t.Errorf("file decoded to %q %v", c.Persona, c.PersonaPrefixes)
	}
}
