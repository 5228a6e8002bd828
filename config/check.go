package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/handlers/generic"
	"github.com/spoki-telescope/spoki/tun"
)

// Problem is one problem of a config file. Line is 1-based; 0 means
// the file as a whole (e.g. a required key that is missing).
type Problem struct {
	Line int
	Msg  string
}

// String implements fmt.Stringer.
func (p Problem) String() string {
	if p.Line == 0 {
		return p.Msg
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
}

// configFields returns the Run field behind each YAML key, from the
// yaml tags: a key added to Run is decoded, checked for unknown
// siblings and diffed on reload without another table to keep in step.
func configFields(c *Run) map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	out := make(map[string]reflect.Value, v.NumField())
	for i := 0; i < v.NumField(); i++ {
		if key := yamlKey(v.Type().Field(i)); key != "" {
			out[key] = v.Field(i)
		}
	}
	return out
}

// Keys returns the YAML keys in Run's field order.
func Keys() []string {
	t := reflect.TypeFor[Run]()
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if key := yamlKey(t.Field(i)); key != "" {
			keys = append(keys, key)
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if key == "-" {
		return ""
	}
	return key
}

// Check decodes the YAML config data onto cfg (which holds the
// defaults) and returns every problem it finds, each with its line: syntax,
// unknown or repeated keys, values of the wrong type or out of range, bad
// or overlapping prefixes, unknown handlers and ports claimed twice. It
// does not stop at the first problem, so that an operator fixes a file in
// one pass. requirePrefix adds the check that the file names a prefix,
// which `spoki run` does not need when --prefix is given.
func Check(data []byte, cfg *Run, requirePrefix bool) []Problem {
	c := &configChecker{cfg: cfg, values: map[string]*yaml.Node{}, seen: map[string]int{}}
	add := c.add
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		add(line, "%s", msg)
		return c.probs
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		if requirePrefix {
			add(0, "no prefix: the telescope needs at least one")
		}
		return c.probs // an empty file: every default
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		add(root.Line, "the file must map keys to values, not be a %s", kindName(root))
		return c.probs
	}
	fields := configFields(cfg)
	known := Keys()
	seen, values := c.seen, c.values
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			add(k.Line, "key %q repeated (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			add(k.Line, "unknown key %q%s", k.Value, suggest(k.Value, known))
			continue
		}
		if k.Value == "handlers" {
			// Walked node by node below, for the lines of nested keys.
			values[k.Value] = v
			continue
		}
		if err := v.Decode(f.Addr().Interface()); err != nil {
			add(v.Line, "%s: %s", k.Value, decodeErrorText(err))
			continue
		}
		values[k.Value] = v
	}
	c.scalars()
	c.prefixes(requirePrefix)
	c.handlers()
	// In file order, as an editor shows them; whole-file problems first.
	slices.SortStableFunc(c.probs, func(a, b Problem) int { return a.Line - b.Line })
	return c.probs
}

// configChecker checks the decoded values of one file.
type configChecker struct {
	cfg *Run
	// seen maps each top-level key of the file to its line; values holds
	// the value nodes of the keys that decoded.
	seen   map[string]int
	values map[string]*yaml.Node
	probs  []Problem
	// telescope holds the file's valid telescope prefixes, to check that
	// the handler and pure-mode prefixes lie inside them.
	telescope []netip.Prefix
}

// add records a problem at line.
func (c *configChecker) add(line int, format string, args ...any) {
	c.probs = append(c.probs, Problem{line, fmt.Sprintf(format, args...)})
}

// line returns the line of key's value, or 0 if the file lacks it.
func (c *configChecker) line(key string) (int, bool) {
	n, ok := c.values[key]
	if !ok {
		return 0, false
	}
	return n.Line, true
}

// scalars applies the rules of the file (rules.go) to each key the file
// sets, at the key's line.
func (c *configChecker) scalars() {
	for i := range rules {
		r := &rules[i]
		if r.scope&inFile == 0 {
			continue
		}
		if l, ok := c.line(r.key); ok {
			if err := r.check(c.cfg); err != nil {
				c.add(l, "%s: %v", r.key, err)
			}
		}
	}
}

// CheckListenAddr accepts "" (off) and HOST:PORT with a numeric port.
func CheckListenAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q (want HOST:PORT)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

// prefixes checks the telescope prefixes (each valid, none overlapping
// another) and the pure-mode prefixes (valid, inside the telescope's).
func (c *configChecker) prefixes(required bool) {
	if n, ok := c.values["prefix"]; ok {
		for i, s := range c.cfg.Prefixes {
			l := itemLine(n, i)
			p, err := tun.ParsePrefix(s)
			if err != nil {
				c.add(l, "prefix: %v", err)
				continue
			}
			for _, q := range overlapping(p, c.telescope) {
				c.add(l, "prefix: %s overlaps %s", p, q)
			}
			c.telescope = append(c.telescope, p)
		}
		if len(c.cfg.Prefixes) == 0 && required {
			c.add(n.Line, "prefix: empty: the telescope needs at least one")
		}
	} else if _, inFile := c.seen["prefix"]; required && !inFile {
		c.add(0, "no prefix: the telescope needs at least one")
	}
	if n, ok := c.values["pure-prefix"]; ok {
		for i, s := range c.cfg.PurePrefixes {
			c.innerPrefix("pure-prefix", s, itemLine(n, i))
		}
	}
}

// innerPrefix checks one handler or pure-mode prefix: valid, and (when the
// file names the telescope's) inside one of them, since a rule for
// addresses the telescope never sees is a typo, not a policy.
func (c *configChecker) innerPrefix(what, s string, line int) {
	p, err := tun.ParsePrefix(s)
	if err != nil {
		c.add(line, "%s: %v", what, err)
		return
	}
	if len(c.telescope) == 0 {
		return
	}
	for _, q := range c.telescope {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return
		}
	}
	c.add(line, "%s: %s lies outside the telescope prefixes", what, p)
}

// portClaim is a port a handler serves, for the conflict check.
type portClaim struct {
	handler  string
	prefixes []netip.Prefix
	line     int // 0 for a default port
}

// handlers walks the handlers map: known names, known keys, valid ports
// and prefixes, and no port served twice for overlapping prefixes (the
// check Registry.Register panics on).
func (c *configChecker) handlers() {
	n, ok := c.values["handlers"]
	if !ok {
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.add(n.Line, "handlers: want a map of handler name to settings, not a %s", kindName(n))
		return
	}
	c.cfg.Handlers = map[string]Handler{}
	lines := map[string]map[uint16]int{} // handler → port → line
	ok = true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if !slices.Contains(HandlerNames(), name) || name == generic.Name {
			c.add(k.Line, "unknown handler %q (configurable: %s)", name, strings.Join(configurableHandlers(), ", "))
			ok = false
			continue
		}
		if _, dup := c.cfg.Handlers[name]; dup {
			c.add(k.Line, "handler %s repeated", name)
			ok = false
			continue
		}
		hc, portLines, good := c.handler(name, v)
		ok = ok && good
		c.cfg.Handlers[name] = hc
		lines[name] = portLines
	}
	if !ok || !c.portConflicts(n, lines) {
		return
	}
	// The registry is the authority: anything the replay above misses
	// still shows, at the handlers key.
	if _, err := BuildRegistry(*c.cfg); err != nil {
		c.add(n.Line, "handlers: %v", err)
	}
}

// portConflicts replays the registration order of BuildRegistry over the
// decoded handlers map n (lines: handler → port → line), so that a port
// claimed twice for overlapping prefixes is reported at the line of the
// handler the file moved; it reports whether there was none.
func (c *configChecker) portConflicts(n *yaml.Node, lines map[string]map[uint16]int) bool {
	ok := true
	var claims = map[uint16][]portClaim{}
	for _, h := range knownHandlers {
		ports, prefixes := h.ports, []netip.Prefix(nil)
		hc, configured := c.cfg.Handlers[h.name]
		if configured {
			if hc.Disabled {
				continue
			}
			if hc.Ports != nil {
				ports = hc.Ports
			}
			for _, s := range hc.Prefixes {
				p, _ := tun.ParsePrefix(s) // checked above
				prefixes = append(prefixes, p)
			}
		}
		for _, port := range ports {
			claim := portClaim{h.name, prefixes, lines[h.name][port]}
			for _, o := range claims[port] {
				if !handlers.Overlaps(o.prefixes, prefixes) {
					continue
				}
				line := claim.line
				if line == 0 {
					line = o.line
				}
				if line == 0 {
					line = n.Line
				}
				c.add(line, "port %d claimed by both %s and %s (for overlapping prefixes)", port, o.handler, h.name)
				ok = false
			}
			claims[port] = append(claims[port], claim)
		}
	}
	return ok
}

// handler checks one entry of the handlers map and returns it decoded,
// with the line of each port it names.
func (c *configChecker) handler(name string, v *yaml.Node) (hc Handler, portLines map[uint16]int, ok bool) {
	ok = true
	portLines = map[uint16]int{}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return hc, portLines, true
	}
	if v.Kind != yaml.MappingNode {
		c.add(v.Line, "handlers: %s: want a map with ports, prefixes, disabled or settings, not a %s", name, kindName(v))
		return hc, portLines, false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if seen[k.Value] {
			c.add(k.Line, "handlers: %s: key %q repeated", name, k.Value)
			ok = false
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "ports":
			ok = c.handlerPorts(name, val, &hc, portLines) && ok
		case "prefixes":
			ok = c.handlerPrefixes(name, val, &hc) && ok
		case "disabled":
			if err := val.Decode(&hc.Disabled); err != nil {
				c.add(val.Line, "handlers: %s: disabled: %s", name, decodeErrorText(err))
				ok = false
			}
		case "settings":
			hc.Settings = val
			if spec, known := lookupSpec(name); known {
				if _, err := spec.build(val); err != nil {
					c.add(settingsLine(val, err), "handlers: %s: %s", name, decodeErrorText(err))
					ok = false
				}
			}
		default:
			c.add(k.Line, "handlers: %s: unknown key %q%s", name, k.Value, suggest(k.Value, []string{"ports", "prefixes", "disabled", "settings"}))
			ok = false
		}
	}
	return hc, portLines, ok
}

// handlerPorts decodes a handler's ports into hc and checks them: no port
// 0, none named twice; portLines gets the line of each.
func (c *configChecker) handlerPorts(name string, val *yaml.Node, hc *Handler, portLines map[uint16]int) bool {
	if err := val.Decode(&hc.Ports); err != nil {
		c.add(val.Line, "handlers: %s: ports: %s", name, decodeErrorText(err))
		return false
	}
	if hc.Ports == nil {
		hc.Ports = []uint16{} // `ports: []` turns the ports off
	}
	ok := true
	for j, p := range hc.Ports {
		l := itemLine(val, j)
		if p == 0 {
			c.add(l, "handlers: %s: port 0 cannot be served", name)
			ok = false
		}
		if first, dup := portLines[p]; dup {
			c.add(l, "handlers: %s: port %d repeated (first on line %d)", name, p, first)
			ok = false
			continue
		}
		portLines[p] = l
	}
	return ok
}

// handlerPrefixes decodes a handler's prefixes into hc and checks each.
func (c *configChecker) handlerPrefixes(name string, val *yaml.Node, hc *Handler) bool {
	if err := val.Decode(&hc.Prefixes); err != nil {
		c.add(val.Line, "handlers: %s: prefixes: %s", name, decodeErrorText(err))
		return false
	}
	before := len(c.probs)
	for j, s := range hc.Prefixes {
		c.innerPrefix("handlers: "+name+": prefixes", s, itemLine(val, j))
	}
	return len(c.probs) == before
}

// configurableHandlers lists the names the handlers map accepts.
func configurableHandlers() []string {
	var out []string
	for _, h := range knownHandlers {
		out = append(out, h.name)
	}
	return out
}

// itemLine returns the line of a sequence's i-th item, or of the node
// itself when it has no such item.
func itemLine(n *yaml.Node, i int) int {
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return n.Line
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "map"
	case yaml.ScalarNode:
		return "single value"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// yamlLinePrefix is the "line N: " that yaml.v3 puts in its messages.
var yamlLinePrefix = regexp.MustCompile(`line (\d+): `)

// yamlErrorLine splits a yaml.v3 syntax error into its line and message.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLinePrefix.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, strings.Replace(msg, m[0], "", 1)
	}
	return 0, msg
}

// decodeErrorText returns a Node.Decode error without yaml.v3's own
// "line N:" (the problem carries the line).
func decodeErrorText(err error) string {
	var te *yaml.TypeError
	var parts []string
	if errors.As(err, &te) {
		parts = te.Errors
	} else {
		parts = []string{err.Error()}
	}
	for i, p := range parts {
		parts[i] = yamlLinePrefix.ReplaceAllString(strings.TrimPrefix(p, "yaml: "), "")
	}
	return strings.Join(parts, "; ")
}

// suggest returns ` (did you mean "k"?)` for the known key closest to key
// within two edits, or "".
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two short keys.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Load decodes a config file onto into (which holds the defaults) and
// fails with every problem of the file, each with its line.
func Load(path string, into *Run) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	probs := Check(data, into, false)
	if len(probs) == 0 {
		return nil
	}
	msgs := make([]string, len(probs))
	for i, p := range probs {
		msgs[i] = p.String()
	}
	return fmt.Errorf("config %s: %s", path, strings.Join(msgs, "; "))
}

// Reloadable lists the keys a SIGHUP applies to a running telescope. The
// handler keys rebuild the Registry behind a new Mux; the others are read
// where they are used. Everything else is fixed by what the process set up
// at start (the TUN, its queues and routes, the open log files, the
// netstack's budgets, the two-phase detector) and needs a restart.
var Reloadable = map[string]bool{
	"handlers":       true,
	"pure":           true,
	"pure-prefix":    true,
	"log-level":      true,
	"metrics":        true,
	"stats-interval": true,
}

// Change is one key whose value differs between two configs.
type Change struct {
	Key      string
	Old, New string
}

// Plan is what a reload changes: the Reloadable keys to apply, and
// the changes that need a restart, in Run's field order.
type Plan struct {
	Apply   []Change
	Restart []Change
}

// has reports whether the plan applies key.
func (p Plan) Has(keys ...string) bool {
	for _, c := range p.Apply {
		if slices.Contains(keys, c.Key) {
			return true
		}
	}
	return false
}

// PlanReload compares the running config with the one just read.
func PlanReload(running, next Run) Plan {
	var plan Plan
	a, b := configFields(&running), configFields(&next)
	for _, key := range Keys() {
		x, y := a[key].Interface(), b[key].Interface()
		if sameValue(a[key], b[key]) {
			continue
		}
		c := Change{Key: key, Old: fmt.Sprint(x), New: fmt.Sprint(y)}
		if Reloadable[key] {
			plan.Apply = append(plan.Apply, c)
		} else {
			plan.Restart = append(plan.Restart, c)
		}
	}
	return plan
}

// sameValue compares two config values; an empty list or map equals a
// missing one, since both mean "none" at the top level.
func sameValue(x, y reflect.Value) bool {
	switch x.Kind() {
	case reflect.Slice, reflect.Map:
		if x.Len() == 0 && y.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(x.Interface(), y.Interface())
}

// ApplyReloadable returns running with next's Reloadable keys: the config
// the process runs after a reload that left the rest for a restart.
func ApplyReloadable(running, next Run) Run {
	a, b := configFields(&running), configFields(&next)
	for key := range Reloadable {
		a[key].Set(b[key])
	}
	return running
}

// settingsLine maps a decode error of a handler's re-encoded settings
// ("line N: ...", counted from the settings' first line) back to the line
// of the config file.
func settingsLine(val *yaml.Node, err error) int {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		var n int
		if _, serr := fmt.Sscanf(msg[i:], "line %d", &n); serr == nil && n > 0 {
			return val.Line + n - 1
		}
	}
	return val.Line
}
