package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
	"github.com/spoki-telescope/spoki/tun"
)

// scope says where a rule applies: to the settings as run validates them
// (flags over the file, Validate) or to each key of a YAML file at its
// line (Check), or both.
type scope uint8

const (
	onFlags scope = 1 << iota
	inFile
	both = onFlags | inFile
)

// flagForm is how Validate puts a rule's text in its message; the checker
// always writes "KEY: TEXT" at the key's line.
type flagForm uint8

const (
	// flagSpace is "run: --KEY TEXT".
	flagSpace flagForm = iota
	// flagColon is "run: --KEY: TEXT".
	flagColon
	// flagValue is "run: --KEY VALUE TEXT": the file's message leaves the
	// value out (the line shows it), the flag's names it.
	flagValue
	// flagBare is TEXT alone: the text names what is wrong itself.
	flagBare
)

// rule is one rule of the settings: the key it is reported at, where it
// applies, and the check, whose error is the text of the message.
type rule struct {
	key   string
	scope scope
	form  flagForm
	check func(c *Run) error
}

// rules are every rule of the settings but the prefixes'
// (telescopePrefixes, and item by item in the file) and the handlers'
// (the registry's), each written once, in the order Validate reports the
// first that fails.
var rules = []rule{
	{"queues", both, flagSpace, func(c *Run) error {
		return failIf(c.Queues < 1 || c.Queues > 64, "%d out of range 1-64", c.Queues)
	}},
	{"keep", both, flagSpace, func(c *Run) error {
		return failIf(c.Keep < 0, "%v must not be negative", c.Keep)
	}},
	{"record-wait", both, flagSpace, func(c *Run) error {
		return failIf(c.RecordWait < 0 || c.RecordWait > time.Second, "%v outside 0-1s", c.RecordWait)
	}},
	{"compress-workers", both, flagSpace, func(c *Run) error {
		return failIf(c.CompressWorkers < 1 || c.CompressWorkers > filesink.MaxCompressWorkers,
			"%d out of range 1-%d", c.CompressWorkers, filesink.MaxCompressWorkers)
	}},
	{"phase-memory", both, flagSpace, func(c *Run) error { return CheckPhaseMemory(c.PhaseMemory) }},
	{"max-conns", both, flagSpace, func(c *Run) error {
		return failIf(c.MaxConns < 1, "%d must be positive", c.MaxConns)
	}},
	{"max-conns-per-ip", both, flagSpace, func(c *Run) error {
		return failIf(c.MaxConnsPerIP < 1, "%d must be positive (>= --max-conns turns the cap off)", c.MaxConnsPerIP)
	}},
	{"max-conns-per-net", both, flagSpace, func(c *Run) error {
		return failIf(c.MaxConnsPerNet < 1, "%d must be positive (>= --max-conns turns the cap off)", c.MaxConnsPerNet)
	}},
	{"max-listeners", both, flagSpace, func(c *Run) error {
		return failIf(c.MaxListeners < 1, "%d must be positive", c.MaxListeners)
	}},
	{"icmp", both, flagSpace, func(c *Run) error {
		return failIf(c.ICMP != "off" && c.ICMP != "echo", "%q: off or echo", c.ICMP)
	}},
	{"udp", both, flagSpace, func(c *Run) error {
		return failIf(c.UDP != "off" && c.UDP != "reply", "%q: off or reply", c.UDP)
	}},
	{"icmp-*", onFlags, flagColon, func(c *Run) error {
		return netstack.ReplyLimits{ICMP: c.ReplyLimits().ICMP}.Validate()
	}},
	{"udp-*", onFlags, flagColon, func(c *Run) error {
		return netstack.ReplyLimits{UDP: c.ReplyLimits().UDP}.Validate()
	}},
	{"reply-table", both, flagSpace, func(c *Run) error {
		if (c.ICMPRate > 0 || c.UDPRate > 0) && c.ReplyTable < netstack.SYNLimitEntryBytes {
			return fmt.Errorf("%v: at least %d bytes", &c.ReplyTable, netstack.SYNLimitEntryBytes)
		}
		return netstack.ReplyLimits{TableEntries: c.ReplyLimits().TableEntries}.Validate()
	}},
	{"synack-*", onFlags, flagColon, func(c *Run) error { return c.SYNACKLimits().Validate() }},
	{"synack-table", both, flagSpace, func(c *Run) error {
		return failIf((c.SYNACKRate > 0 || c.SYNACKIrregularRate > 0) && c.SYNACKTable < netstack.SYNLimitEntryBytes,
			"%v: at least %d bytes", &c.SYNACKTable, netstack.SYNLimitEntryBytes)
	}},
	{"persona", both, flagColon, func(c *Run) error {
		_, err := netstack.LookupPersona(c.Persona)
		return err
	}},
	{"persona-prefix", both, flagSpace, func(c *Run) error { return c.checkPersonaPrefixes() }},
	{"conn-buffer", both, flagSpace, func(c *Run) error {
		return failIf(c.ConnBuffer < netstack.MinConnBuffer || c.ConnBuffer > netstack.MaxConnBuffer, "%s outside 8KiB-64KiB", &c.ConnBuffer)
	}},
	{"memory-limit", both, flagSpace, func(c *Run) error {
		return failIf(c.MemoryLimit < MinMemoryLimit, "%s below %s", &c.MemoryLimit, sizeOf(MinMemoryLimit))
	}},
	{"gc-percent", both, flagValue, func(c *Run) error {
		return failIf(c.GCPercent < 10 || c.GCPercent > 1000, "%d outside 10-1000", c.GCPercent)
	}},
	{"request-timeout", both, flagValue, positive(func(c *Run) time.Duration { return c.RequestTimeout })},
	{"tag", both, flagSpace, func(c *Run) error {
		return failIf(c.Tag == "" || strings.ContainsAny(c.Tag, "/."), "%q must be non-empty without '/' or '.'", c.Tag)
	}},
	{"host-name", both, flagSpace, func(c *Run) error {
		return failIf(len(c.HostName) > 255 || strings.ContainsFunc(c.HostName, func(r rune) bool { return r < 0x20 || r == 0x7f }),
			"%q: at most 255 bytes, no control characters", c.HostName)
	}},
	{"community-id-seed", both, flagSpace, func(c *Run) error {
		return failIf(c.CommunityIDSeed < 0 || c.CommunityIDSeed > 65535, "%d out of range 0-65535", c.CommunityIDSeed)
	}},
	{"log-level", both, flagBare, func(c *Run) error { _, err := ParseLevel(c.LogLevel); return err }},
	{"metrics", both, flagColon, func(c *Run) error { return CheckListenAddr(c.Metrics) }},
	{"pprof", both, flagColon, func(c *Run) error { return CheckListenAddr(c.Pprof) }},
	{"pprof", both, flagColon, func(c *Run) error {
		if CheckListenAddr(c.Pprof) != nil {
			return nil // the rule above reports it
		}
		return CheckPprofAddr(c.Pprof, c.PprofAny)
	}},
	// Only the file can break these: the flags' defaults are sound, and
	// run takes what an operator sets on its command line.
	{"tun", inFile, flagSpace, func(c *Run) error {
		return failIf(c.Tun == "" || len(c.Tun) > 15 || strings.ContainsAny(c.Tun, "/ "),
			"%q is not an interface name (1-15 characters, no '/' or space)", c.Tun)
	}},
	{"log-dir", inFile, flagSpace, func(c *Run) error { return failIf(c.LogDir == "", "empty") }},
	{"first-data-timeout", inFile, flagValue, positive(func(c *Run) time.Duration { return c.FirstDataTimeout })},
	{"idle-timeout", inFile, flagValue, positive(func(c *Run) time.Duration { return c.IdleTimeout })},
	{"total-timeout", inFile, flagValue, positive(func(c *Run) time.Duration { return c.TotalTimeout })},
	{"phase-timeout", inFile, flagValue, positive(func(c *Run) time.Duration { return c.PhaseTimeout })},
	{"stats-interval", inFile, flagSpace, func(c *Run) error {
		return failIf(c.StatsInterval < 0, "negative (0 turns the stats line off)")
	}},
	{"progress", both, flagSpace, func(c *Run) error {
		return failIf(c.Progress && c.StatsInterval == 0, "needs a stats-interval above 0 (its redraw interval)")
	}},
	{"metrics", inFile, flagSpace, func(c *Run) error {
		return failIf(c.Metrics != "" && c.Metrics == c.Pprof, "%s is also the pprof address", c.Metrics)
	}},
	// Kafka's TLS and SASL (config/kafka.go): files that exist and parse,
	// keys that go together.
	{"kafka-tls-ca", both, flagColon, func(c *Run) error {
		if c.KafkaTLSCA == "" {
			return nil
		}
		_, err := kafkasink.LoadCA(c.KafkaTLSCA)
		return err
	}},
	{"kafka-tls-cert", both, flagColon, func(c *Run) error {
		if c.KafkaTLSCert == "" {
			return nil
		}
		if c.KafkaTLSKey == "" {
			return errors.New("needs kafka-tls-key")
		}
		_, err := tls.LoadX509KeyPair(c.KafkaTLSCert, c.KafkaTLSKey)
		return err
	}},
	{"kafka-tls-key", both, flagColon, func(c *Run) error {
		return failIf(c.KafkaTLSKey != "" && c.KafkaTLSCert == "", "needs kafka-tls-cert")
	}},
	{"kafka-tls-insecure-skip-verify", both, flagColon, func(c *Run) error {
		return failIf(c.KafkaTLSInsecureSkipVerify && c.KafkaTLSCA != "",
			"would ignore kafka-tls-ca: set one of them")
	}},
	{"kafka-sasl", both, flagColon, func(c *Run) error { return c.checkSASL() }},
	{"kafka-sasl-user", both, flagColon, func(c *Run) error {
		return failIf(c.KafkaSASLUser != "" && c.KafkaSASL == "", "has no effect without kafka-sasl")
	}},
	{"kafka-sasl-password-file", both, flagColon, func(c *Run) error {
		if c.KafkaSASLPasswordFile == "" {
			return nil
		}
		if c.KafkaSASL == "" {
			return errors.New("has no effect without kafka-sasl")
		}
		_, err := kafkasink.ReadPassword(c.KafkaSASLPasswordFile)
		return err
	}},
}

// failIf is the error of a rule: the text when bad holds, else nil.
func failIf(bad bool, format string, args ...any) error {
	if !bad {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// positive is the rule of a duration that must be above zero.
func positive(d func(c *Run) time.Duration) func(c *Run) error {
	return func(c *Run) error { return failIf(d(c) <= 0, "must be positive") }
}

// flagError is r's failure as Validate reports it.
func (r *rule) flagError(c *Run, err error) error {
	switch r.form {
	case flagColon:
		return fmt.Errorf("run: --%s: %w", r.key, err)
	case flagValue:
		return fmt.Errorf("run: --%s %v %w", r.key, configFields(c)[r.key].Interface(), err)
	case flagBare:
		return err
	}
	return fmt.Errorf("run: --%s %w", r.key, err)
}

// telescopePrefixes parses the telescope prefixes for Validate: each
// valid, none overlapping another (the rule the file's checker applies
// item by item, with overlapping).
func telescopePrefixes(list []string) ([]netip.Prefix, error) {
	if len(list) == 0 {
		return nil, errors.New("run: at least one --prefix is required")
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := tun.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		if q := overlapping(p, out); len(q) > 0 {
			return nil, fmt.Errorf("run: prefixes %s and %s overlap", q[0], p)
		}
		out = append(out, p)
	}
	return out, nil
}

// overlapping returns the prefixes of seen that share an address with p:
// telescope prefixes may not, since a packet must belong to one.
func overlapping(p netip.Prefix, seen []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, q := range seen {
		if q.Overlaps(p) {
			out = append(out, q)
		}
	}
	return out
}
