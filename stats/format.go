package stats

import (
	"strconv"
	"time"
)

// FormatSize spells a number of bytes for people, in binary units with
// one decimal: 512B, 4.0KiB, 34.8MiB, 1.2GiB.
func FormatSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + [...]string{"KiB", "MiB", "GiB", "TiB"}[i]
}

// ParseSize reads what FormatSize writes, and plain byte counts: the
// inverse for the programs that read the stats line. A formatted value
// comes back to within its rounding (0.05 of its unit).
func ParseSize(s string) (uint64, bool) {
	mult := 1.0
	for i, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if len(s) > len(u) && s[len(s)-len(u):] == u {
			s, mult = s[:len(s)-len(u)], float64(uint64(1)<<(10*(i+1)))
			break
		}
	}
	if mult == 1 && len(s) > 1 && s[len(s)-1] == 'B' {
		s = s[:len(s)-1]
	}
	if mult == 1 {
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, false
	}
	return uint64(f * mult), true
}

// FormatRate spells n events over d as a rate per second for people:
// whole numbers from 100 on, one decimal from 10, two below (so that one
// event a minute still shows, as 0.02).
func FormatRate(n uint64, d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	r := float64(n) / d.Seconds()
	switch {
	case r == 0:
		return "0"
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64)
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}
