//go:build race

package kafka

// raceEnabled: the race detector slows every record down.
const raceEnabled = true
