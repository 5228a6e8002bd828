package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/adb"
	"github.com/spoki-telescope/spoki/handlers/generic"
	httph "github.com/spoki-telescope/spoki/handlers/http"
	"github.com/spoki-telescope/spoki/handlers/mqtt"
	"github.com/spoki-telescope/spoki/handlers/redis"
	"github.com/spoki-telescope/spoki/handlers/smb"
	"github.com/spoki-telescope/spoki/handlers/ssh"
	"github.com/spoki-telescope/spoki/handlers/tds"
	"github.com/spoki-telescope/spoki/handlers/telnet"
	tlsh "github.com/spoki-telescope/spoki/handlers/tls"
	"github.com/spoki-telescope/spoki/tun"
	"gopkg.in/yaml.v3"
)

// handlerSpec is one protocol handler spoki knows: how to build it and
// where it listens by default. Adding a handler is one line in
// knownHandlers (see handlers/README.md).
type handlerSpec struct {
	name string
	// build makes the handler from the config file's `settings` (nil:
	// the handler's defaults).
	build   func(settings *yaml.Node) (handlers.Handler, error)
	content func([]byte) bool
	ports   []uint16
	// speakFirst is set for protocols whose clients wait for the server:
	// the handler package's own SpeakFirst.
	speakFirst time.Duration
}

// knownHandlers, in registration order: content matchers are tried in this
// order (TLS before HTTP, so a TLS record on port 80 goes to tls).
var knownHandlers = []handlerSpec{
	{name: tlsh.Name, build: with(tlsh.New), content: tlsh.Match, ports: tlsh.Ports},
	{name: httph.Name, build: with(httph.New), content: httph.Match, ports: httph.Ports},
	{name: ssh.Name, build: with(ssh.New), content: ssh.Match, ports: ssh.Ports, speakFirst: ssh.SpeakFirst},
	{name: telnet.Name, build: with(telnet.New), content: telnet.Match, ports: telnet.Ports, speakFirst: telnet.SpeakFirst},
	{name: adb.Name, build: with(adb.New), content: adb.Match, ports: adb.Ports},
	{name: tds.Name, build: with(tds.New), content: tds.Match, ports: tds.Ports},
	{name: smb.Name, build: with(smb.New), content: smb.Match, ports: smb.Ports},
	{name: redis.Name, build: with(redis.New), content: redis.Match, ports: redis.Ports},
	{name: mqtt.Name, build: with(mqtt.New), content: mqtt.Match, ports: mqtt.Ports},
}

// Handler is one entry of the config file's `handlers` map: it moves
// a handler to other ports, limits it to some prefixes, or turns it off.
type Handler struct {
	Ports    []uint16 `yaml:"ports"`
	Prefixes []string `yaml:"prefixes"`
	Disabled bool     `yaml:"disabled"`
	// Settings is the handler's own Config (banners, the page served,
	// limits, timeouts): its field names in lower case, e.g.
	// `settings: {banner: "SSH-2.0-OpenSSH_9.2", readtimeout: 5s}`.
	Settings *yaml.Node `yaml:"settings"`
}

// with adapts a handler package's New(Config) to handlerSpec.build: the
// settings decode strictly into its Config, so a misspelt key is an error.
func with[C any, H handlers.Handler](newHandler func(C) H) func(*yaml.Node) (handlers.Handler, error) {
	return func(settings *yaml.Node) (handlers.Handler, error) {
		var c C
		if settings != nil && settings.Kind != 0 {
			b, err := yaml.Marshal(settings)
			if err != nil {
				return nil, err
			}
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				return nil, fmt.Errorf("settings: %w", err)
			}
		}
		return newHandler(c), nil
	}
}

// lookupSpec returns the known handler of that name.
func lookupSpec(name string) (handlerSpec, bool) {
	for _, h := range knownHandlers {
		if h.name == name {
			return h, true
		}
	}
	return handlerSpec{}, false
}

// BuildRegistry registers the known handlers with the config's changes, and
// generic as the fallback. Pure Spoki mode (everywhere or per prefix) sends
// connections to generic only: the first payload, then a reset.
func BuildRegistry(cfg Run) (*handlers.Registry, error) {
	reg := handlers.NewRegistry(generic.New(generic.Config{}))
	known := map[string]bool{generic.Name: true}
	for _, h := range knownHandlers {
		known[h.name] = true
	}
	names := make([]string, 0, len(cfg.Handlers))
	for name := range cfg.Handlers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !known[name] || name == generic.Name {
			return nil, fmt.Errorf("config: unknown handler %q (known: %v)", name, HandlerNames())
		}
	}
	for _, h := range knownHandlers {
		m := handlers.Matcher{Content: h.content, Ports: h.ports, SpeakFirst: h.speakFirst}
		var settings *yaml.Node
		if hc, ok := cfg.Handlers[h.name]; ok {
			settings = hc.Settings
			if hc.Disabled {
				continue
			}
			if hc.Ports != nil {
				m.Ports = hc.Ports
			}
			for _, s := range hc.Prefixes {
				p, err := tun.ParsePrefix(s)
				if err != nil {
					return nil, fmt.Errorf("config: handler %s: %w", h.name, err)
				}
				m.Prefixes = append(m.Prefixes, p)
			}
		}
		handler, err := h.build(settings)
		if err != nil {
			return nil, fmt.Errorf("config: handler %s: %w", h.name, err)
		}
		if err := register(reg, handler, m); err != nil {
			return nil, err
		}
	}
	if cfg.Pure {
		reg.PureAll()
	}
	var pure []netip.Prefix
	for _, s := range cfg.PurePrefixes {
		p, err := tun.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("pure-prefix: %w", err)
		}
		pure = append(pure, p)
	}
	if len(pure) > 0 {
		reg.PureFor(pure...)
	}
	return reg, nil
}

// register turns Register's start-up panic (a port claimed twice) into an
// error: here it comes from the operator's config, not from code.
func register(reg *handlers.Registry, h handlers.Handler, m handlers.Matcher) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("config: handler %s: %v", h.Name(), r)
		}
	}()
	reg.Register(h, m)
	return nil
}

// HandlerNames lists the handlers spoki knows, the fallback (generic) last.
func HandlerNames() []string {
	var out []string
	for _, h := range knownHandlers {
		out = append(out, h.name)
	}
	return slices.Concat(out, []string{generic.Name})
}
