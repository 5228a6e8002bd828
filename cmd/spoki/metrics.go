package main

import "github.com/spoki-telescope/spoki/stats/promstats"

// newTelemetry registers the spoki collector over src, the session
// duration histogram, and Go's runtime and process collectors.
// A new source is a stats struct (package stats) added to metricsSources
// and statsTypes: the stats line and the collector follow.
func newTelemetry(src metricsSources) *promstats.Telemetry {
	return promstats.New(src.snapshots, statsTypes...)
}
