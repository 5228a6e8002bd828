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

func (b *downloadBytes) String() string { return strconv.FormatInt(int64(*b), 10) }

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

// downloadMain is `spoki download`.
func downloadMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("download", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), downloadUsage)
		fs.PrintDefaults()
	}
	out := fs.String("out", ".", "store directory (malware/, activity/, tried.tsv)")
	oncePer := fs.Duration("once-per", download.DefaultOncePer, "fetch each URL at most once per this interval (failures count)")
	timeout := fs.Duration("timeout", download.DefaultTimeout, "bound of one whole fetch: connect, TLS, headers, redirects, body")
	maxBytes := downloadBytes(download.DefaultMaxBytes)
	fs.Var(&maxBytes, "max-bytes", "largest body stored (default 32MiB)")
	maxRedirects := fs.Int("max-redirects", download.DefaultMaxRedirects, "redirects followed at most (0: none)")
	insecure := fs.Bool("insecure-tls", false, "do not verify server certificates")
	var allow, deny, prefixes downloadPrefixes
	fs.Var(&allow, "allow", "connect to addresses in this prefix even if the built-in list refuses them (repeatable; exactly this range)")
	fs.Var(&deny, "deny", "never connect to addresses in this prefix (repeatable; e.g. your own network; wins over --allow)")
	fs.Var(&prefixes, "prefix", "the telescope's prefix, never connected to (repeatable, as for spoki run)")
	runConfigPath := fs.String("config", "", "spoki run's config `FILE`: its prefixes are never connected to (as --prefix)")
	workers := fs.Int("workers", download.DefaultWorkers, "fetches running at once")
	perHost := fs.Int("per-host", download.DefaultPerHost, "fetches running at once for one server")
	maxURLs := fs.Int("max-urls-per-payload", download.DefaultMaxURLsPerPayload, "URLs taken from one payload (the rest are counted as cut)")
	maxStore := byteSize(download.DefaultMaxStore)
	fs.Var(&maxStore, "max-store", "quota of the sample store (sum of malware.bin sizes); full: nothing more is fetched (default 10GiB)")
	maxState := byteSize(download.DefaultMaxState)
	fs.Var(&maxState, "max-state", "memory budget of the rate-limit table; the oldest entries are evicted beyond it (default 32MiB)")
	rdns := fs.Bool("rdns", false, "fill the rdns column (sends PTR queries for the servers' addresses)")
	userAgent := fs.String("user-agent", download.DefaultUserAgent, "User-Agent header")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	brokers := fs.String("kafka", "", "read events from these Kafka `BROKERS` (host:port,...) instead of files")
	group := fs.String("group", "", "Kafka consumer group `NAME` shared by the fetchers (with --kafka)")
	topicPrefix := fs.String("kafka-topic-prefix", "", "prefix of the topic names, as given to spoki run")
	tags := fs.String("tag", "", "telescope `TAG`s whose topics are read, comma-separated (default untagged)")
	events := fs.String("kafka-events", download.DefaultKafkaEventType, "event `TYPES` read, comma-separated (downloader, session, syn)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	kafka := *brokers != ""
	switch {
	case kafka && len(pos) > 0:
		return errors.New("download: --kafka reads no INPUT files")
	case kafka && *group == "":
		return errors.New("download: --kafka needs --group")
	case !kafka && len(pos) == 0:
		fs.Usage()
		return errors.New("download: want at least one INPUT")
	}
	if *oncePer <= 0 || *timeout <= 0 || *maxRedirects < 0 {
		return errors.New("download: --once-per and --timeout must be positive, --max-redirects not negative")
	}
	if *workers <= 0 || *perHost <= 0 || *maxURLs <= 0 || maxStore <= 0 || maxState <= 0 {
		return errors.New("download: --workers, --per-host, --max-urls-per-payload, --max-store and --max-state must be positive")
	}
	if *runConfigPath != "" {
		rc := defaultRunConfig()
		if err := config.Load(*runConfigPath, &rc); err != nil {
			return fmt.Errorf("download: --config: %w", err)
		}
		for _, p := range rc.Prefixes {
			if err := prefixes.Set(p); err != nil {
				return fmt.Errorf("download: --config %s: prefix %q: %w", *runConfigPath, p, err)
			}
		}
	}
	lvl, err := config.ParseLevel(*level)
	if err != nil {
		return err
	}
	log := newLogger(lvl).With("component", "download")
	redirects := *maxRedirects
	if redirects == 0 {
		redirects = -1 // Config's zero means the default
	}
	d, err := download.New(download.Config{
		Dir: *out, OncePer: *oncePer, Timeout: *timeout, MaxBytes: int64(maxBytes),
		MaxRedirects: redirects, InsecureTLS: *insecure, Allow: allow, Deny: deny, Telescope: prefixes,
		ReverseDNS: *rdns, UserAgent: *userAgent, Logger: log,
		MaxStore: int64(maxStore), MaxState: int64(maxState),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := bufio.NewWriter(os.Stdout)
	var wmu sync.Mutex // the workers print
	handle := func(ctx context.Context, t download.Target) error {
		r, err := d.Handle(ctx, t)
		if err != nil {
			return err
		}
		if r.First {
			wmu.Lock()
			defer wmu.Unlock()
			downloadPrintResult(w, r, *oncePer)
			// Flushed per URL: a fetch may take --timeout, and the
			// operator watches the lines come.
			return w.Flush()
		}
		return nil
	}
	var attrs []slog.Attr
	if kafka {
		var ks download.KafkaStats
		ks, err = downloadKafka(ctx, downloadKafkaFlags{
			brokers: *brokers, group: *group, prefix: *topicPrefix, tags: *tags, events: *events, timeout: *timeout,
			workers: *workers, perHost: *perHost, maxURLs: *maxURLs,
		}, log, handle)
		attrs = []slog.Attr{slog.Int("records", ks.Records), slog.Int("bad_records", ks.BadRecords),
			slog.Int("payloads", ks.Payloads), slog.Int("urls", ks.URLs), slog.Int("cut_urls", ks.CutURLs),
			slog.Int("commits", ks.Commits), slog.Int("commit_errors", ks.CommitErrors)}
	} else {
		var st download.ScanStats
		pool := download.NewPool(*workers, *perHost, handle)
		err = download.Scan(ctx, pos, download.ScanConfig{MaxURLsPerPayload: *maxURLs}, &st,
			func(t download.Target) error { return pool.Submit(ctx, t, nil) })
		err = errors.Join(err, pool.Wait())
		attrs = []slog.Attr{slog.Int("files", st.Files), slog.Int("lines", st.Lines), slog.Int("bad_lines", st.BadLines),
			slog.Int("payloads", st.Payloads), slog.Int("urls", st.URLs), slog.Int("cut_urls", st.CutURLs)}
	}
	err = errors.Join(err, w.Flush(), d.Close())
	s := d.Stats
	log.LogAttrs(context.Background(), slog.LevelInfo, "done", append(attrs,
		slog.Int("fetches", s.Fetches), slog.Int("successes", s.Successes), slog.Int("failures", s.Failures),
		slog.Int("denied", s.Denied), slog.Int("skipped", s.Skipped), slog.Int("unsupported", s.Unsupported),
		slog.Int("too_long", s.TooLong), slog.Int("stored", s.Stored), slog.Int("store_full", s.StoreFull),
		slog.Int64("store_bytes", s.StoreBytes), slog.Int("state_entries", s.StateEntries),
		slog.Int64("state_bytes", s.StateBytes), slog.Int("evicted", s.Evicted), slog.Int("expired", s.Expired),
		slog.Int("tried_compactions", s.Compactions))...)
	if errors.Is(err, context.Canceled) {
		return nil // SIGINT/SIGTERM: what was done is on disk
	}
	return err
}

// downloadKafkaFlags are the --kafka settings of spoki download.
type downloadKafkaFlags struct {
	brokers, group, prefix, tags, events string
	timeout                              time.Duration
	workers, perHost, maxURLs            int
}

// downloadRebalanceBudget is the part of the group's rebalance timeout
// (franz-go's default, 60 s) that one poll's fetches may take; the rest is
// margin for the commits and the rdns lookups.
const downloadRebalanceBudget = 45 * time.Second

// downloadKafka consumes the topics of f as a member of f.group until ctx
// is done, calling handle with each Target.
func downloadKafka(ctx context.Context, f downloadKafkaFlags, log *slog.Logger,
	handle func(context.Context, download.Target) error) (download.KafkaStats, error) {
	var topics []string
	for _, tag := range downloadSplit(f.tags, download.DefaultKafkaTag) {
		for _, ev := range downloadSplit(f.events, download.DefaultKafkaEventType) {
			topics = append(topics, download.KafkaTopic(f.prefix, tag, ev))
		}
	}
	c, err := download.NewConsumer(download.KafkaConfig{
		Brokers: downloadSplit(f.brokers, ""), Group: f.group, Topics: topics,
		// Each record may cost a whole fetch; the member must hand its
		// partitions back within the rebalance timeout.
		MaxPollRecords:    max(1, int(downloadRebalanceBudget/f.timeout)),
		Workers:           f.workers,
		PerHost:           f.perHost,
		MaxURLsPerPayload: f.maxURLs,
		Logger:            log,
	})
	if err != nil {
		return download.KafkaStats{}, err
	}
	defer c.Close()
	log.LogAttrs(ctx, slog.LevelInfo, "ready", slog.String("group", f.group), slog.Any("topics", topics))
	err = c.Run(ctx, handle)
	return c.Stats, err
}

// downloadSplit splits a comma-separated list, dropping empty items; an
// empty list gives def (none if def is empty).
func downloadSplit(s, def string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	if len(out) == 0 && def != "" {
		out = []string{def}
	}
	return out
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
