package lab

import (
	"net/netip"
	"testing"
	"time"
)

// TestFloodConfigSource checks the default spoofed sources by family, and
// that a given Src wins.
func TestFloodConfigSource(t *testing.T) {
	own := netip.MustParsePrefix("192.0.2.0/28")
	for _, tc := range []struct {
		cfg  FloodConfig
		want netip.Prefix
	}{
		{FloodConfig{Prefix: netip.MustParsePrefix("198.51.100.0/24")}, FloodSrc4},
		{FloodConfig{Prefix: netip.MustParsePrefix("2001:db8:2::/64")}, FloodSrc6},
		{FloodConfig{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Src: own}, own},
	} {
		if got := tc.cfg.Source(); got != tc.want {
			t.Errorf("%v.Source() = %s, want %s", tc.cfg.Prefix, got, tc.want)
		}
	}
}

// TestFloodConfigString checks the start line's text: the irregular kind
// and the duration cut to MaxFloodDuration.
func TestFloodConfigString(t *testing.T) {
	cfg := FloodConfig{Iface: "veth0", Prefix: netip.MustParsePrefix("198.51.100.0/24"), Irregular: true,
		Duration: MaxFloodDuration + time.Minute}
	want := "198.51.100.0/24 with irregular " + FloodSYN.String() + " from " + FloodSrc4.String() +
		" on veth0 for at most " + MaxFloodDuration.String()
	if got := cfg.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	cfg.Irregular, cfg.Kind, cfg.Duration = false, FloodRST, time.Second
	want = "198.51.100.0/24 with " + FloodRST.String() + " from " + FloodSrc4.String() + " on veth0 for at most 1s"
	if got := cfg.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
