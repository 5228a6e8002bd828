package telescope

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// promSelector is one vector selector of a PromQL expression: the metric
// name and its equality matchers on literal values.
type promSelector struct {
	Name     string
	Matchers map[string]string
}

// promQuery is what a PromQL expression refers to: its selectors and the
// labels of its by/without/on/ignoring/group_* clauses.
type promQuery struct {
	Selectors []promSelector
	Labels    []string
}

// promKeywords are PromQL words that are no metric names: the binary
// operators and modifiers, and the aggregations (which may be followed by
// by/without rather than their parenthesis).
var promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true}

// promLabelLists are the clauses followed by a list of label names.
var promLabelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

// parsePromQL finds the selectors and grouping labels of expr. It is a
// scanner, not a parser: enough for the dashboard's queries (strings,
// label matchers, ranges, Grafana's $variables, function calls and
// grouping clauses), and it refuses what it cannot read.
func parsePromQL(expr string) (promQuery, error) {
	var q promQuery
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	readString := func(i int) (string, int, error) { // expr[i] is the quote
		quote := expr[i]
		var b strings.Builder
		for j := i + 1; j < len(expr); j++ {
			switch {
			case expr[j] == '\\' && quote != '`' && j+1 < len(expr):
				j++
				b.WriteByte(expr[j])
			case expr[j] == quote:
				return b.String(), j + 1, nil
			default:
				b.WriteByte(expr[j])
			}
		}
		return "", 0, fmt.Errorf("unterminated string at %d", i)
	}
	readIdent := func(i int) (string, int) {
		j := i
		for j < len(expr) && isIdent(expr[j]) {
			j++
		}
		return expr[i:j], j
	}
	lastSelector := -1 // index in q.Selectors of a name just read, for its {matchers}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
			continue
		case c == '"' || c == '\'' || c == '`':
			_, j, err := readString(i)
			if err != nil {
				return q, err
			}
			i = j
		case c == '{':
			if lastSelector < 0 {
				return q, fmt.Errorf("selector without a metric name at %d", i)
			}
			sel := &q.Selectors[lastSelector]
			i++
			for {
				i = skipSpace(i)
				if i < len(expr) && expr[i] == '}' {
					i++
					break
				}
				if i < len(expr) && expr[i] == ',' {
					i++
					continue
				}
				if i >= len(expr) || !isIdentStart(expr[i]) {
					return q, fmt.Errorf("bad label matcher at %d", i)
				}
				var label string
				label, i = readIdent(i)
				i = skipSpace(i)
				op := ""
				for _, o := range []string{"=~", "!~", "!=", "="} {
					if strings.HasPrefix(expr[i:], o) {
						op = o
						break
					}
				}
				if op == "" {
					return q, fmt.Errorf("bad matcher operator at %d", i)
				}
				i = skipSpace(i + len(op))
				if i >= len(expr) || !strings.ContainsRune("\"'`", rune(expr[i])) {
					return q, fmt.Errorf("matcher value is no string at %d", i)
				}
				val, j, err := readString(i)
				if err != nil {
					return q, err
				}
				i = j
				if label == "__name__" {
					return q, fmt.Errorf("__name__ matcher: name the metric instead")
				}
				if op == "=" && !strings.Contains(val, "$") {
					sel.Matchers[label] = val
				}
			}
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return q, fmt.Errorf("unterminated range at %d", i)
			}
			i += j + 1
		case c == '$': // a Grafana variable outside a string: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return q, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += j + 1
			} else {
				_, i = readIdent(i)
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++ // a number or a duration
			}
		case isIdentStart(c):
			var id string
			id, i = readIdent(i)
			next := skipSpace(i)
			switch {
			case promLabelLists[strings.ToLower(id)]:
				if next >= len(expr) || expr[next] != '(' {
					if strings.HasPrefix(id, "group_") {
						continue // group_left without labels
					}
					return q, fmt.Errorf("%s without a label list at %d", id, next)
				}
				end := strings.IndexByte(expr[next:], ')')
				if end < 0 {
					return q, fmt.Errorf("unterminated %s( at %d", id, next)
				}
				for _, l := range strings.Split(expr[next+1:next+end], ",") {
					if l = strings.TrimSpace(l); l != "" {
						q.Labels = append(q.Labels, l)
					}
				}
				i = next + end + 1
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation
			case promKeywords[strings.ToLower(id)]:
			default:
				q.Selectors = append(q.Selectors, promSelector{Name: id, Matchers: map[string]string{}})
				lastSelector = len(q.Selectors) - 1
				continue
			}
		default:
			i++ // an operator, a parenthesis, a comma
		}
		lastSelector = -1
	}
	return q, nil
}

// TestDashboardPromQLNames checks the scanner the dashboard test relies on.
func TestDashboardPromQLNames(t *testing.T) {
	for _, tc := range []struct {
		expr   string
		want   []promSelector
		labels []string
	}{
		{`histogram_quantile(0.95, sum by (le, app_proto) (rate(a_bucket{x="y", z=~"$v", instance=~"$instance"}[$__rate_interval])))`,
			[]promSelector{{"a_bucket", map[string]string{"x": "y"}}}, []string{"le", "app_proto"}},
		{`sum(b{c="d"}) / on(instance) group_left(version) c offset 5m and ignoring (k) d_total > 1e3`,
			[]promSelector{{"b", map[string]string{"c": "d"}}, {"c", map[string]string{}}, {"d_total", map[string]string{}}}, []string{"instance", "version", "k"}},
		{`time() - process_start_time_seconds{instance=~"$instance"}`,
			[]promSelector{{"process_start_time_seconds", map[string]string{}}}, nil},
		{`sum without(cause) (rate(x:y_total{s="a}b"}[5m])) * 100`,
			[]promSelector{{"x:y_total", map[string]string{"s": "a}b"}}}, []string{"cause"}},
	} {
		got, err := parsePromQL(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got.Selectors, tc.want) || !reflect.DeepEqual(got.Labels, tc.labels) {
			t.Errorf("%s:\n got %+v %v\nwant %+v %v", tc.expr, got.Selectors, got.Labels, tc.want, tc.labels)
		}
	}
	for _, bad := range []string{`{__name__="x"}`, `x{a="b"`, `rate(x[5m)`, `x{a=b}`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// exportedFamily is a metric family spoki exports: its type and the
// values of each label.
type exportedFamily struct {
	Type   dto.MetricType
	Labels map[string]map[string]bool
}

// exportedMetrics gathers a registry built as `spoki run` builds it, with
// every source present (the TUN, Kafka) and a value in each map and
// histogram, so that every family shows up; the names a query may use map
// to their family (a histogram's _bucket, _sum and _count, a summary's
// _sum and _count).
func exportedMetrics(t *testing.T) map[string]*exportedFamily {
	t.Helper()
	var ns netstack.Stats
	tp := newTwoPhaseFeed(time.Minute, time.Minute, func(time.Time, []byte) {}, slog.New(slog.DiscardHandler))
	tel := newTelemetry(metricsSources{
		Netstack: ns.Snapshot,
		Mux: func() handlers.StatsSnapshot {
			return handlers.StatsSnapshot{Sessions: 2, ByHandler: map[string]uint64{"http": 1, "generic": 1}}
		},
		Sink:     func() filesink.Stats { return filesink.Stats{} },
		TwoPhase: tp,
		Kafka:    func() kafkasink.Stats { return kafkasink.Stats{} },
		TUN:      func() (uint64, uint64, uint64, error) { return 1, 1, 0, nil },
	})
	accepted := time.Now()
	tel.ObserveSession(&records.Session{AppProto: "http", End: accepted.Add(time.Second),
		Flow: records.Flow{Accepted: accepted, Local: netip.MustParseAddrPort("192.0.2.1:80")}})
	fams, err := tel.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*exportedFamily{}
	for _, f := range fams {
		ef := &exportedFamily{Type: f.GetType(), Labels: map[string]map[string]bool{}}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if ef.Labels[l.GetName()] == nil {
					ef.Labels[l.GetName()] = map[string]bool{}
				}
				ef.Labels[l.GetName()][l.GetValue()] = true
			}
		}
		name := f.GetName()
		out[name] = ef
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			bucket := &exportedFamily{Type: ef.Type, Labels: map[string]map[string]bool{"le": {}}}
			for k, v := range ef.Labels {
				bucket.Labels[k] = v
			}
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = bucket, ef, ef
		case dto.MetricType_SUMMARY:
			ef.Labels["quantile"] = map[string]bool{}
			out[name+"_sum"], out[name+"_count"] = ef, ef
		}
	}
	return out
}

// dashboardPanel is what the test reads of a Grafana panel.
type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// labelValuesRE is a Grafana variable query label_values(METRIC, LABEL).
var labelValuesRE = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// TestDashboardMetrics checks deploy/grafana-dashboard.json: it parses,
// every panel queries the dashboard's Prometheus data source, and every
// metric name in every PromQL expression (and the instance variable's
// query) is one spoki exports, with label matchers and grouping labels it
// has; and the dashboard covers what an operator watches (rates, drops by
// cause, sessions by protocol, two-phase events, the detector window,
// memory, the build).
func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard has no uid or title")
	}
	exported := exportedMetrics(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		q, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
			return
		}
		if len(q.Selectors) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, s := range q.Selectors {
			fam := exported[s.Name]
			if fam == nil {
				t.Errorf("%s: %s is no metric spoki exports", where, s.Name)
				continue
			}
			used[s.Name] = true
			for label, value := range s.Matchers {
				if !fam.Labels[label][value] {
					t.Errorf("%s: %s has no series %s=%q", where, s.Name, label, value)
				}
			}
		}
		for _, label := range q.Labels {
			if label == "instance" || label == "job" { // Prometheus adds them at scrape
				continue
			}
			found := false
			for _, s := range q.Selectors {
				if fam := exported[s.Name]; fam != nil && fam.Labels[label] != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no metric of %q has the label %s", where, expr, label)
			}
		}
	}
	var panels []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	ids := map[int]bool{}
	queries := 0
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: data source %+v, want the dashboard's ${datasource}", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s %s: empty query", where, tg.RefID)
				continue
			}
			queries++
			check(where+" "+tg.RefID, tg.Expr)
		}
	}
	var haveDS, haveInstance bool
	for _, v := range dash.Templating.List {
		switch v.Name {
		case "datasource":
			haveDS = v.Type == "datasource"
		case "instance":
			m := labelValuesRE.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable instance: %q is no label_values(METRIC, LABEL)", v.Definition)
				continue
			}
			haveInstance = true
			check("variable instance", m[1])
		}
	}
	if !haveDS || !haveInstance {
		t.Errorf("templating: datasource variable %v, instance variable %v; want both", haveDS, haveInstance)
	}
	for _, want := range []string{
		"spoki_netstack_packets_received_total", "spoki_netstack_packets_total", // packet and SYN-ACK rates
		"spoki_handlers_sessions_total",                                      // sessions by protocol
		"spoki_netstack_drops_total", "spoki_filesink_records_dropped_total", // drops by cause
		"spoki_twophase_events_total", "spoki_twophase_window_seconds", // two-phase
		"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", // memory
		"spoki_build_info",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d panels, %d queries, %d metrics: %s", len(panels), queries, len(names), strings.Join(names, " "))
}
