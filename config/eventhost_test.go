package config

import "testing"

// TestEventHost: the host of the events is --host-name, else the tag.
func TestEventHost(t *testing.T) {
	c := Default()
	c.Tag = "vp1"
	if got := c.EventHost(); got != "vp1" {
		t.Errorf("EventHost() = %q, want the tag", got)
	}
	c.HostName = "sensor-a"
	if got := c.EventHost(); got != "sensor-a" {
		t.Errorf("EventHost() = %q, want sensor-a", got)
	}
	if d := Default(); !d.Alerts || d.CommunityIDSeed != 0 || d.HostName != "" {
		t.Errorf("defaults: alerts %v seed %d host-name %q", d.Alerts, d.CommunityIDSeed, d.HostName)
	}
}
