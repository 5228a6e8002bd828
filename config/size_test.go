package config

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"0": 0, "4096": 4096, "32MiB": 32 << 20, "32M": 32 << 20, "1GiB": 1 << 30,
		"512KiB": 512 << 10, " 64 MiB ": 64 << 20, "10B": 10, "2G": 2 << 30,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1.5MiB", "12XB", "99999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	for _, v := range []Size{32 << 20, 1 << 30, 512 << 10, 1000} {
		s := v.String()
		back, err := ParseSize(s)
		if err != nil || back != v {
			t.Errorf("%d → %q → %d, %v", v, s, back, err)
		}
	}
	var y struct {
		S Size `yaml:"s"`
	}
	if err := yaml.Unmarshal([]byte("s: 48MiB\n"), &y); err != nil || y.S != 48<<20 {
		t.Errorf("yaml: %d, %v", y.S, err)
	}
	if err := yaml.Unmarshal([]byte("s: lots\n"), &y); err == nil {
		t.Error("yaml accepted a bad size")
	}
}
