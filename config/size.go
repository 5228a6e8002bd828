package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a flag and YAML value in bytes, written as a number with an
// optional binary unit: 32MiB, 512KiB, 1GiB, 64M, or plain bytes. Memory
// budgets are set in these units, so that an operator reads the same figure
// in the flag, the config file and the start-up line.
type Size int64

// sizeUnits maps each accepted suffix to its multiplier; K, M and G mean
// KiB, MiB and GiB (as GOMEMLIMIT and systemd's MemoryMax do).
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize reads a Size; negative sizes and overflows are errors.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q (a number of bytes, or with KiB, MiB, GiB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return Size(n * mult), nil
}

// String implements flag.Value, in the largest unit that divides the size.
func (b *Size) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	switch {
	case n != 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

// Set implements flag.Value.
func (b *Size) Set(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler: "32MiB" or a plain integer.
func (b *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("a size must be a scalar such as 32MiB")
	}
	return b.Set(n.Value)
}

// MarshalYAML implements yaml.Marshaler, so that a reload diff prints units.
func (b Size) MarshalYAML() (any, error) { return b.String(), nil }
