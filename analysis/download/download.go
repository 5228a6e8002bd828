package download

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spoki-telescope/spoki/analysis/urls"
)

// Defaults of Config (the issue's, and the original's where it has one).
const (
	DefaultOncePer      = time.Hour
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBytes     = 32 << 20
	DefaultMaxRedirects = 5
	// DefaultMaxStore is the default quota of the sample store.
	DefaultMaxStore = 10 << 30
	// DefaultMaxState is the default budget of the rate-limit table
	// (about 150,000 URLs of 100 bytes).
	DefaultMaxState = 32 << 20
	// DefaultUserAgent is wget's: some droppers serve only to the tools
	// their own commands use.
	DefaultUserAgent = "Wget/1.21.3"
)

// rdnsTimeout bounds one reverse lookup, which must not stall the run.
const rdnsTimeout = 2 * time.Second

// MaxURLBytes caps the length of a URL that is fetched and tracked; a
// longer one is refused (counted in Stats.TooLong), so that one entry of
// the rate-limit table stays small.
const MaxURLBytes = 4096

// Config holds the settings of a Downloader. Zero values mean the defaults.
type Config struct {
	// Dir is the store (required); it is created if missing.
	Dir string
	// OncePer is the shortest interval between two fetches of one URL
	// (default 1 h). Failures count as fetches.
	OncePer time.Duration
	// Timeout bounds one whole fetch: connect, TLS, headers, redirects and
	// body (default 10 s).
	Timeout time.Duration
	// MaxBytes caps a body (default 32 MiB); a larger one is not stored.
	MaxBytes int64
	// MaxRedirects caps the redirects followed (default 5; negative: none).
	MaxRedirects int
	// InsecureTLS skips the verification of server certificates.
	InsecureTLS bool
	// Allow opens exactly these ranges, which BuiltinDeny, Telescope or
	// the host's addresses would refuse (see Policy for the precedence).
	Allow []netip.Prefix
	// Deny adds ranges that are never connected to (the operator's own
	// networks); they win over Allow.
	Deny []netip.Prefix
	// Telescope lists the telescope's own prefixes, refused like the
	// built-in ranges.
	Telescope []netip.Prefix
	// OwnAddrs are the host's own addresses, refused like the built-in
	// ranges; nil means HostAddrs() at New.
	OwnAddrs []netip.Addr
	// MaxStore is the quota of the sample store in bytes (the sum of the
	// malware.bin sizes, default DefaultMaxStore): a sample that does not
	// fit is not stored, and no fetch starts while the store is full.
	MaxStore int64
	// MaxState is the budget in bytes of the rate-limit table (default
	// DefaultMaxState), each entry costing its URL's length plus
	// EntryOverhead. Expired entries leave as the run goes; when the
	// budget is reached the oldest live entry is evicted (Stats.Evicted),
	// and its URL may be fetched again before OncePer has passed.
	MaxState int64
	// ReverseDNS fills the activity's rdns column for IP-literal servers.
	ReverseDNS bool
	// UserAgent is sent with every request (default DefaultUserAgent).
	UserAgent string
	// Now is the wall clock (default time.Now); tests move it.
	Now func() time.Time
	// Logger receives Debug lines per fetch (default: discard).
	Logger *slog.Logger
}

// Target is one URL found in one event, with the event's fields that the
// activity log records.
type Target struct {
	urls.Download
	// TS is the event time in milliseconds since the epoch.
	TS int64
	// Saddr, Daddr, Sport and Dport are the event's flow (scanner →
	// telescope).
	Saddr, Daddr string
	Sport, Dport int
	// Tag is the assemble record's tag or the event log's event type.
	Tag string
}

// Kind classifies a Result for the one line printed per URL.
type Kind string

// The kinds of Result.
const (
	// KindSuccess: HTTP 200, the body is in the store.
	KindSuccess Kind = "success"
	// KindError: the fetch was tried and failed (status, timeout, cap, TLS…).
	KindError Kind = "error"
	// KindSkipped: the URL was tried less than OncePer ago.
	KindSkipped Kind = "skipped"
	// KindUnsupported: not an http or https URL, or a URL longer than
	// MaxURLBytes; nothing was tried.
	KindUnsupported Kind = "unsupported"
	// KindDenied: the address to connect to (of the URL or of a redirect)
	// is refused by the Policy; no connection was made to it.
	KindDenied Kind = "denied"
)

// Result is the outcome of Handle for one Target.
type Result struct {
	Target Target
	Kind   Kind
	// Attempted says whether a fetch was made (the activity's attempted).
	Attempted bool
	// Status is the activity's status column: "success", the error text,
	// or "" when nothing was attempted.
	Status string
	// SHA256 is the hex digest of the stored body (success only).
	SHA256 string
	// Size is the body's length in bytes (success only).
	Size int64
	// Stored says that this fetch added the sample to the store.
	Stored bool
	// First says that this is the URL's first Result in this Downloader's
	// life; the command prints one line per URL from it.
	First bool
	// Err is the fetch's error (KindError, KindUnsupported, KindDenied),
	// nil otherwise.
	Err error
}

// Stats counts what a Downloader did; read it after the run (after every
// Handle has returned).
type Stats struct {
	// Targets counts the calls of Handle; Fetches the fetches started,
	// and of those Successes, Failures and Denied (refused by the
	// Policy, at the URL's address or at a redirect's).
	Targets, Fetches, Successes, Failures, Denied int
	// Skipped counts URLs tried less than OncePer ago, Unsupported those
	// not fetched for their scheme, TooLong those longer than
	// MaxURLBytes.
	Skipped, Unsupported, TooLong int
	// Stored counts the samples added; StoreFull the fetches not started
	// or samples not stored because of MaxStore.
	Stored, StoreFull int
	// Evicted counts live rate-limit entries dropped for MaxState,
	// Expired those that ran out; Compactions the rewrites of tried.tsv.
	Evicted, Expired, Compactions int
	// StoreBytes is the size of the samples in the store.
	StoreBytes int64
	// StateEntries and StateBytes are the rate-limit table's entries and
	// its estimated size (see EntryOverhead).
	StateEntries int
	StateBytes   int64
}

// Downloader fetches URLs into the store. Handle is safe for concurrent
// use (see Pool); the fetches run in parallel, the table and the files are
// updated under one lock.
type Downloader struct {
	cfg    Config
	client *http.Client
	policy *Policy
	log    *slog.Logger

	mu         sync.Mutex
	table      *table
	tried      *os.File
	triedLines int
	storeUsed  int64
	zw         *gzip.Writer
	// Stats is updated by Handle; read it with Snapshot while Handle runs.
	Stats Stats
}

// New prepares the store in cfg.Dir and loads the rate-limit table.
func New(cfg Config) (*Downloader, error) {
	if cfg.Dir == "" {
		return nil, errors.New("download: no store directory")
	}
	if cfg.OncePer <= 0 {
		cfg.OncePer = DefaultOncePer
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxStore <= 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	if cfg.MaxState <= 0 {
		cfg.MaxState = DefaultMaxState
	}
	own := cfg.OwnAddrs
	if own == nil {
		var err error
		if own, err = HostAddrs(); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, sub := range []string{"malware", "activity"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("download: create store: %w", err)
		}
	}
	d := &Downloader{cfg: cfg, log: log, table: newTable(cfg.MaxState)}
	d.policy = NewPolicy(cfg.Allow, cfg.Deny, cfg.Telescope, own)
	d.client = newClient(cfg, d.policy)
	m, err := loadTried(d.triedPath())
	if err != nil {
		return nil, err
	}
	d.table.load(m, cfg.Now().UnixNano())
	recs := d.table.triedEntries()
	if d.tried, err = rewriteTried(d.triedPath(), recs); err != nil {
		return nil, err
	}
	d.triedLines = len(recs)
	if d.storeUsed, err = storeSize(filepath.Join(cfg.Dir, "malware")); err != nil {
		return nil, err
	}
	return d, nil
}

// Snapshot returns the counters, with the table's and the store's sizes.
func (d *Downloader) Snapshot() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.Stats
	s.Evicted, s.Expired = d.table.evicted, d.table.expired
	s.StateEntries, s.StateBytes = d.table.Len(), d.table.bytes
	s.StoreBytes = d.storeUsed
	return s
}

// Close closes the rate-limit file.
func (d *Downloader) Close() error {
	d.client.CloseIdleConnections()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Stats.Evicted, d.Stats.Expired = d.table.evicted, d.table.expired
	d.Stats.StateEntries, d.Stats.StateBytes = d.table.Len(), d.table.bytes
	d.Stats.StoreBytes = d.storeUsed
	if err := d.tried.Close(); err != nil {
		return fmt.Errorf("download: close %s: %w", d.triedPath(), err)
	}
	return nil
}

// newClient builds the HTTP client: its own transport (no proxy, from the
// environment or elsewhere: the connection must go where the policy
// looked; no transparent decompression), the policy check in the dialer's
// Control hook, and the redirect cap.
func newClient(cfg Config, p *Policy) *http.Client {
	dialer := &net.Dialer{
		Timeout: cfg.Timeout,
		// Control runs after name resolution, for each address tried and
		// for every connection (each redirect hop): nothing reaches
		// connect(2) that the policy did not see.
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrDenied, address, err)
			}
			return p.Check(ap.Addr(), ap.Port())
		},
	}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, net.JoinHostPort(dialHost(host), port))
		},
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: cfg.InsecureTLS}, //nolint:gosec // --insecure-tls, see the package doc
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		// The cap on response headers: a server sending endless headers
		// hits it instead of the body cap.
		MaxResponseHeaderBytes: 64 << 10,
	}
	maxRedirects := max(cfg.MaxRedirects, 0)
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("%w (more than %d)", ErrTooManyRedirects, maxRedirects)
			}
			return nil
		},
	}
}

// Handle applies the rate limit to t, fetches it if due, and writes the
// activity row (and, on success, the sample and its downloads row). The
// error is an error of the store (the caller should stop); what happened
// to the URL is in the Result. It may be called concurrently.
func (d *Downloader) Handle(ctx context.Context, t Target) (Result, error) {
	start := d.cfg.Now().UTC()
	now := start.UnixNano()
	r := Result{Target: t}
	scheme, _, _ := cutScheme(t.URL)
	fetch := false
	d.mu.Lock()
	d.Stats.Targets++
	e, live := d.table.get(t.URL, now)
	r.First = !live || !e.printed
	switch {
	case len(t.URL) > MaxURLBytes:
		// Not tracked: the table would hold it.
		r.Kind, r.Err = KindUnsupported, fmt.Errorf("%w (%d bytes, more than %d)", ErrURLTooLong, len(t.URL), MaxURLBytes)
		r.Status, r.First = r.Err.Error(), true
		d.Stats.TooLong++
	case scheme != "http" && scheme != "https":
		r.Kind, r.Err = KindUnsupported, fmt.Errorf("%w %s", ErrUnsupportedScheme, scheme)
		r.Status = r.Err.Error()
		d.Stats.Unsupported++
		if !live {
			d.table.set(t.URL, entry{exp: start.Add(d.cfg.OncePer).UnixNano()}, now)
		}
	case live:
		r.Kind = KindSkipped
		d.Stats.Skipped++
	case d.storeUsed >= d.cfg.MaxStore:
		r.Kind, r.Err = KindError, d.storeFull()
		r.Status = r.Err.Error()
		d.Stats.StoreFull++
		d.table.set(t.URL, entry{exp: start.Add(d.cfg.OncePer).UnixNano()}, now)
	default:
		fetch, r.Attempted = true, true
		d.Stats.Fetches++
		if err := d.markTried(t.URL, start.Add(d.cfg.OncePer), start); err != nil {
			d.mu.Unlock()
			return r, err
		}
	}
	d.table.markPrinted(t.URL)
	d.mu.Unlock()

	if fetch {
		var err error
		r.SHA256, r.Size, r.Stored, err = d.fetch(ctx, t.URL)
		if err != nil && isStoreError(err) {
			return r, err
		}
		var de *DeniedError
		d.mu.Lock()
		switch {
		case err == nil:
			r.Kind, r.Status = KindSuccess, "success"
			d.Stats.Successes++
			if r.Stored {
				d.Stats.Stored++
			}
		case errors.As(err, &de):
			r.Kind, r.Err, r.Status = KindDenied, err, de.Error()
			d.Stats.Denied++
		case errors.Is(err, ErrDenied):
			r.Kind, r.Err, r.Status = KindDenied, err, innermost(err)
			d.Stats.Denied++
		default:
			r.Kind, r.Err, r.Status = KindError, err, statusText(err, d.cfg)
			d.Stats.Failures++
			if errors.Is(err, ErrStoreFull) {
				d.Stats.StoreFull++
			}
		}
		d.mu.Unlock()
	}
	rdns := ""
	if r.Attempted && r.Kind != KindDenied && d.cfg.ReverseDNS {
		rdns = reverse(ctx, t.Server)
	}
	d.mu.Lock()
	err := d.writeActivity(t, rdns, r, start)
	if err == nil && r.Kind == KindSuccess {
		err = d.writeDownloadRow(t, r.SHA256, start)
	}
	d.mu.Unlock()
	if err != nil {
		return r, err
	}
	d.log.LogAttrs(ctx, slog.LevelDebug, "download", slog.String("url", t.URL),
		slog.String("kind", string(r.Kind)), slog.String("status", r.Status), slog.String("sha256", r.SHA256))
	return r, nil
}

// storeFull is the status of a sample refused for the quota.
func (d *Downloader) storeFull() error {
	return fmt.Errorf("%w (%d of --max-store %d bytes used)", ErrStoreFull, d.storeUsed, d.cfg.MaxStore)
}

// cutScheme splits "scheme://rest".
func cutScheme(u string) (scheme, rest string, ok bool) {
	return strings.Cut(u, "://")
}

// storeError marks an error of the local store, which stops the run, as
// opposed to an error of the remote server, which is a status.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

func isStoreError(err error) bool {
	var se storeError
	return errors.As(err, &se)
}

// httpStatusError is a non-200 answer.
type httpStatusError struct {
	code int
	url  string
}

// Error is requests' HTTPError text for ≥400, and a plain one otherwise.
func (e *httpStatusError) Error() string {
	reason := http.StatusText(e.code)
	switch {
	case e.code >= 500 && e.code < 600:
		return fmt.Sprintf("%d Server Error: %s for url: %s", e.code, reason, e.url)
	case e.code >= 400:
		return fmt.Sprintf("%d Client Error: %s for url: %s", e.code, reason, e.url)
	}
	return fmt.Sprintf("HTTP %d %s for url: %s (only 200 is stored)", e.code, reason, e.url)
}

// fetch GETs u under the deadline and stores a 200 body.
func (d *Downloader) fetch(ctx context.Context, u string) (sum string, size int64, stored bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, false, err
	}
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := d.client.Do(req)
	if err != nil {
		return "", 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, false, &httpStatusError{resp.StatusCode, resp.Request.URL.String()}
	}
	if resp.ContentLength > d.cfg.MaxBytes {
		return "", 0, false, fmt.Errorf("%w: Content-Length %d > %d", ErrTooLarge, resp.ContentLength, d.cfg.MaxBytes)
	}
	tmp, err := os.CreateTemp(filepath.Join(d.cfg.Dir, "malware"), ".part-*")
	if err != nil {
		return "", 0, false, storeError{fmt.Errorf("download: temporary file: %w", err)}
	}
	defer func() {
		// Only a renamed file survives; the temporary one always goes.
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, d.cfg.MaxBytes+1))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", 0, false, storeError{fmt.Errorf("download: write %s: %w", tmp.Name(), err)}
		}
		return "", 0, false, fmt.Errorf("read body: %w", err)
	}
	if size > d.cfg.MaxBytes {
		return "", 0, false, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, d.cfg.MaxBytes)
	}
	sum = hexSum(h)
	stored, err = d.store(tmp, sum, size)
	return sum, size, stored, err
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// store moves the complete temporary file to malware/SUM/malware.bin,
// read-only, unless that sample is already there; a new sample that does
// not fit the quota is refused with ErrStoreFull.
func (d *Downloader) store(tmp *os.File, sum string, size int64) (bool, error) {
	// Made durable before the lock: the other workers need not wait for
	// a disk flush.
	if err := tmp.Chmod(0o444); err != nil {
		return false, storeError{fmt.Errorf("download: chmod: %w", err)}
	}
	if err := tmp.Sync(); err != nil {
		return false, storeError{fmt.Errorf("download: sync: %w", err)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dir := filepath.Join(d.cfg.Dir, "malware", sum)
	bin := filepath.Join(dir, "malware.bin")
	if _, err := os.Lstat(bin); err == nil {
		return false, nil
	}
	if d.storeUsed+size > d.cfg.MaxStore {
		return false, d.storeFull()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, storeError{fmt.Errorf("download: create %s: %w", dir, err)}
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return false, storeError{fmt.Errorf("download: store %s: %w", bin, err)}
	}
	d.storeUsed += size
	return true, nil
}

// storeSize sums the sizes of the samples in dir (DIR/malware).
func storeSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("download: read store: %w", err)
	}
	var n int64
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(dir, e.Name(), "malware.bin")); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n, nil
}

// statusText turns a fetch error into the status column: short, and
// saying what to do where there is something to do.
func statusText(err error, cfg Config) string {
	var hs *httpStatusError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ne net.Error
	switch {
	case errors.As(err, &hs):
		return hs.Error()
	case errors.Is(err, ErrTooManyRedirects), errors.Is(err, ErrDenied), errors.Is(err, ErrTooLarge), errors.Is(err, ErrStoreFull):
		return innermost(err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout after " + cfg.Timeout.String()
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		return "tls: " + innermost(err) + " (--insecure-tls skips the check)"
	}
	return innermost(err)
}

// innermost drops the "Get \"URL\": " prefix of *url.Error: the URL is
// printed beside the status anyway.
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// reverse is the rdns column: the first PTR name of an IP-literal server,
// "failed" if there is none, "" for names (no lookup is sent for them).
func reverse(ctx context.Context, server string) string {
	a, err := netip.ParseAddr(server)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, rdnsTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, a.String())
	if err != nil || len(names) == 0 {
		return "failed"
	}
	return trimDot(names[0])
}

func trimDot(s string) string {
	if len(s) > 1 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// formatTS is the downloads.csv timestamp: Python's str(datetime) of an
// aware UTC time, e.g. 2021-10-13 21:04:36.123456+00:00.
func formatTS(t time.Time) string {
	s := t.UTC().Format("2006-01-02 15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += "." + fmt.Sprintf("%06d", us)
	}
	return s + "+00:00"
}

// pyBool is Python's str(bool).
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func itoa(i int) string { return strconv.Itoa(i) }
