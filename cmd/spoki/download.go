package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/analysis/download"
	"github.com/spoki-telescope/spoki/config"
)

const downloadUsage = `usage: spoki download [--out DIR] [--once-per 1h] [--timeout 10s] [--max-bytes 32MiB]
                      [--max-redirects 5] [--insecure-tls] [--allow CIDR ...] [--deny CIDR ...]
                      [--prefix CIDR ... | --config FILE] [--workers 4] [--per-host 1]
                      [--max-urls-per-payload 16] [--max-store 10GiB] [--max-state 32MiB] [--rdns] INPUT...
       spoki download --kafka BROKERS --group NAME [--kafka-topic-prefix P] [--tag TAG[,TAG...]]
                      [--kafka-events downloader] [the options above]

Finds the downloader URLs in the payloads of spoki's event log
(TAG.events.*.jsonl[.gz]) or of assemble's output (TAG-events-*.json.gz),
INPUT being files or directories, and fetches each http(s) URL at most once
per --once-per into DIR/malware/SHA256/malware.bin (read-only, never run),
logging every sighting in DIR/activity/NAME.YYYY.MM.csv.gz.

It prints one line per URL: STATUS<TAB>URL<TAB>SHA256 or reason, STATUS being
success, error, denied, skipped (tried less than --once-per ago) or
unsupported; control bytes in the URL and the reason are escaped (\x1b).

Nothing inside the site is fetched by default: the address of every
connection (after DNS, and of every redirect) is checked before connect and
refused ("denied") if it is loopback, unspecified, link-local, private (RFC
1918), CGNAT, ULA, multicast, reserved, documentation or benchmarking space,
an IPv4-mapped, NAT64, 6to4 or Teredo form of one of those, a --prefix of
the telescope (or of spoki run's --config FILE), or an address of this
host. --allow CIDR opens exactly that range; --deny CIDR adds one and wins
over --allow. At most --workers fetches run at once, --per-host to one
server; the rate-limit table is capped at --max-state, the samples at
--max-store; the last log line counts every URL cut, evicted or refused.

A telescope usually wants --insecure-tls: droppers rarely have valid
certificates, and a sample is known by its hash.

With --kafka it reads the events that spoki run --kafka publishes instead of
files, as a member of the consumer group --group: run it on several machines
with one group name and they share the partitions. It reads the topics
Pspoki.TAG.EVENT for each --tag and --kafka-events type (by default the
downloader events, one per URL the handlers saw), and commits a record's
offset only after its activity row is written, so a fetcher that dies leaves
its records to the others. It runs until SIGINT or SIGTERM.`

// downloadPrefixes is the repeatable --deny flag.
type downloadPrefixes []netip.Prefix

func (p *downloadPrefixes) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *downloadPrefixes) Set(s string) error {
	x, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return err
		}
		x = netip.PrefixFrom(a, a.BitLen())
	}
	*p = append(*p, x.Masked())
	return nil
}

// downloadBytes is a byte size flag: 32MiB, 1GiB, 500k, 1048576.
type downloadBytes int64

func (b *downloadBytes) String() string { s := config.Size(*b); return s.String() }

func (b *downloadBytes) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1_000_000}, {"GB", 1_000_000_000},
		{"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("bad size %q (want e.g. 32MiB)", s)
	}
	*b = downloadBytes(n * mult)
	return nil
}

// downloadOpts are the flags of `spoki download`.
type downloadOpts struct {
	out                                       string
	oncePer, timeout                          time.Duration
	maxBytes                                  downloadBytes
	maxRedirects                              int
	insecure, rdns                            bool
	allow, deny, prefixes                     downloadPrefixes
	runConfigPath                             string
	workers, perHost, maxURLs                 int
	maxStore, maxState                        byteSize
	userAgent, level                          string
	brokers, group, topicPrefix, tags, events string
}

// downloadFlags defines the flags of `spoki download` on o.
func downloadFlags(o *downloadOpts) *flag.FlagSet {
	fs := newFlagSet("download", downloadUsage)
	fs.StringVar(&o.out, "out", ".", "store `DIR` (malware/, activity/, tried.tsv)")
	fs.DurationVar(&o.oncePer, "once-per", download.DefaultOncePer, "fetch each URL at most once per this interval (failures count)")
	fs.DurationVar(&o.timeout, "timeout", download.DefaultTimeout, "bound of one whole fetch: connect, TLS, headers, redirects, body")
	o.maxBytes = downloadBytes(download.DefaultMaxBytes)
	fs.Var(&o.maxBytes, "max-bytes", "largest body `SIZE` stored")
	fs.IntVar(&o.maxRedirects, "max-redirects", download.DefaultMaxRedirects, "redirects followed at most (0: none)")
	fs.BoolVar(&o.insecure, "insecure-tls", false, "do not verify server certificates")
	fs.Var(&o.allow, "allow", "connect to addresses in this `CIDR` even if the built-in list refuses them (repeatable; exactly this range)")
	fs.Var(&o.deny, "deny", "never connect to addresses in this `CIDR` (repeatable; e.g. your own network; wins over --allow)")
	fs.Var(&o.prefixes, "prefix", "the telescope's prefix `CIDR`, never connected to (repeatable, as for spoki run)")
	fs.StringVar(&o.runConfigPath, "config", "", "spoki run's config `FILE`: its prefixes are never connected to (as --prefix)")
	fs.IntVar(&o.workers, "workers", download.DefaultWorkers, "fetches running at once")
	fs.IntVar(&o.perHost, "per-host", download.DefaultPerHost, "fetches running at once for one server")
	fs.IntVar(&o.maxURLs, "max-urls-per-payload", download.DefaultMaxURLsPerPayload, "URLs taken from one payload (the rest are counted as cut)")
	o.maxStore = byteSize(download.DefaultMaxStore)
	fs.Var(&o.maxStore, "max-store", "quota `SIZE` of the sample store (sum of malware.bin sizes); full: nothing more is fetched")
	o.maxState = byteSize(download.DefaultMaxState)
	fs.Var(&o.maxState, "max-state", "memory budget `SIZE` of the rate-limit table; the oldest entries are evicted beyond it")
	fs.BoolVar(&o.rdns, "rdns", false, "fill the rdns column (sends PTR queries for the servers' addresses)")
	fs.StringVar(&o.userAgent, "user-agent", download.DefaultUserAgent, "User-Agent header `STRING`")
	fs.StringVar(&o.level, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	fs.StringVar(&o.brokers, "kafka", "", "read events from these Kafka `BROKERS` (host:port,...) instead of files")
	fs.StringVar(&o.group, "group", "", "Kafka consumer group `NAME` shared by the fetchers (with --kafka)")
	fs.StringVar(&o.topicPrefix, "kafka-topic-prefix", "", "prefix `P` of the topic names, as given to spoki run")
	fs.StringVar(&o.tags, "tag", "", "telescope `TAG`s whose topics are read, comma-separated (default untagged)")
	fs.StringVar(&o.events, "kafka-events", download.DefaultKafkaEventType, "event `TYPES` read, comma-separated (downloader, session, syn)")
	return fs
}

// check checks the flags against each other and the INPUTs, and adds the
// prefixes of spoki run's --config to the telescope's.
func (o *downloadOpts) check(fs *flag.FlagSet, pos []string) error {
	kafka := o.brokers != ""
	switch {
	case kafka && len(pos) > 0:
		return usagef("download", "download: --kafka reads no INPUT files")
	case kafka && o.group == "":
		return usagef("download", "download: --kafka needs --group")
	case !kafka && len(pos) == 0:
		return usagef("download", "download: want at least one INPUT (or --kafka)")
	}
	if o.oncePer <= 0 || o.timeout <= 0 || o.maxRedirects < 0 {
		return usagef("download", "download: --once-per and --timeout must be positive, --max-redirects not negative")
	}
	if o.workers <= 0 || o.perHost <= 0 || o.maxURLs <= 0 || o.maxStore <= 0 || o.maxState <= 0 {
		return usagef("download", "download: --workers, --per-host, --max-urls-per-payload, --max-store and --max-state must be positive")
	}
	if o.runConfigPath != "" {
		rc := defaultRunConfig()
		if err := config.Load(o.runConfigPath, &rc); err != nil {
			return fmt.Errorf("download: --config: %w", err)
		}
		for _, p := range rc.Prefixes {
			if err := o.prefixes.Set(p); err != nil {
				return fmt.Errorf("download: --config %s: prefix %q: %w", o.runConfigPath, p, err)
			}
		}
	}
	return nil
}

// downloadMain is `spoki download`.
func downloadMain(ctx context.Context, args []string) error {
	var o downloadOpts
	fs := downloadFlags(&o)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if err := o.check(fs, pos); err != nil {
		return err
	}
	lvl, err := config.ParseLevel(o.level)
	if err != nil {
		return &usageError{cmd: "download", err: fmt.Errorf("download: --log-level: %w", err)}
	}
	log := newLogger(lvl).With("component", "download")
	redirects := o.maxRedirects
	if redirects == 0 {
		redirects = -1 // Config's zero means the default
	}
	d, err := download.New(download.Config{
		Dir: o.out, OncePer: o.oncePer, Timeout: o.timeout, MaxBytes: int64(o.maxBytes),
		MaxRedirects: redirects, InsecureTLS: o.insecure, Allow: o.allow, Deny: o.deny, Telescope: o.prefixes,
		ReverseDNS: o.rdns, UserAgent: o.userAgent, Logger: log,
		MaxStore: int64(o.maxStore), MaxState: int64(o.maxState),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := bufio.NewWriter(os.Stdout)
	attrs, err := download.Feed(ctx, download.FeedConfig{
		Inputs: pos, Brokers: o.brokers, Group: o.group, TopicPrefix: o.topicPrefix, Tags: o.tags, Events: o.events,
		Timeout: o.timeout, Workers: o.workers, PerHost: o.perHost, MaxURLsPerPayload: o.maxURLs, Logger: log,
	}, downloadPrinter(d, w, o.oncePer))
	err = errors.Join(err, w.Flush(), d.Close())
	log.LogAttrs(context.Background(), slog.LevelInfo, "done", append(attrs, d.Stats.Attrs()...)...)
	if errors.Is(err, context.Canceled) {
		return nil // SIGINT/SIGTERM: what was done is on disk
	}
	return err
}

// downloadPrinter handles each Target with d and prints the first result
// of each URL on w.
func downloadPrinter(d *download.Downloader, w *bufio.Writer, oncePer time.Duration) func(context.Context, download.Target) error {
	var wmu sync.Mutex // the workers print
	return func(ctx context.Context, t download.Target) error {
		r, err := d.Handle(ctx, t)
		if err != nil {
			return err
		}
		if r.First {
			wmu.Lock()
			defer wmu.Unlock()
			downloadPrintResult(w, r, oncePer)
			// Flushed per URL: a fetch may take --timeout, and the
			// operator watches the lines come.
			return w.Flush()
		}
		return nil
	}
}

// downloadPrintResult prints the line of one URL.
func downloadPrintResult(w io.Writer, r download.Result, oncePer time.Duration) {
	detail := r.SHA256
	switch r.Kind {
	case download.KindSkipped:
		detail = "tried less than " + oncePer.String() + " ago"
	case download.KindError, download.KindUnsupported, download.KindDenied:
		detail = r.Status
	}
	// The URL and the reason carry the attacker's bytes.
	fmt.Fprintf(w, "%s\t%s\t%s\n", r.Kind, termSafe(r.Target.URL), termSafe(detail))
}
