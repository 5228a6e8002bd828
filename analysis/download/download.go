package download

import (
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
	// DefaultUserAgent is wget's: some droppers serve only to the tools
	// their own commands use.
	DefaultUserAgent = "Wget/1.21.3"
)

// rdnsTimeout bounds one reverse lookup, which must not stall the run.
const rdnsTimeout = 2 * time.Second

// pruneEvery is how many tries pass between removals of expired entries
// from the rate-limit table (the original's 100,000).
const pruneEvery = 100_000

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
	// Deny lists prefixes whose addresses are never connected to (the
	// operator's own networks).
	Deny []netip.Prefix
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
	// KindUnsupported: not an http or https URL; nothing was tried.
	KindUnsupported Kind = "unsupported"
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
	// Err is the fetch's error (KindError, KindUnsupported), nil otherwise.
	Err error
}

// Stats counts what a Downloader did; read it after the run.
type Stats struct {
	Targets, Fetches, Successes, Failures, Skipped, Unsupported, Stored int
}

// Downloader fetches URLs into the store. It is not safe for concurrent use:
// the command feeds it one Target at a time.
type Downloader struct {
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	expires map[string]time.Time
	seen    map[string]bool
	tried   *os.File
	tries   int
	// Stats is updated by Handle.
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, sub := range []string{"malware", "activity"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("download: create store: %w", err)
		}
	}
	d := &Downloader{cfg: cfg, log: log, seen: map[string]bool{}}
	d.client = newClient(cfg)
	var err error
	if d.expires, err = loadTried(d.triedPath(), cfg.Now()); err != nil {
		return nil, err
	}
	if d.tried, err = rewriteTried(d.triedPath(), d.expires); err != nil {
		return nil, err
	}
	return d, nil
}

// Close closes the rate-limit file.
func (d *Downloader) Close() error {
	d.client.CloseIdleConnections()
	if err := d.tried.Close(); err != nil {
		return fmt.Errorf("download: close %s: %w", d.triedPath(), err)
	}
	return nil
}

// newClient builds the HTTP client: its own transport (no proxy from the
// environment, no transparent decompression), the dial-time deny check,
// and the redirect cap.
func newClient(cfg Config) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: denyControl(cfg.Deny)}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
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

// denyControl refuses connections to the denied prefixes. It runs after
// name resolution, for every connection, redirects included.
func denyControl(deny []netip.Prefix) func(string, string, syscall.RawConn) error {
	if len(deny) == 0 {
		return nil
	}
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrDenied, address, err)
		}
		a := ap.Addr().Unmap()
		for _, p := range deny {
			if p.Contains(a) {
				return fmt.Errorf("%w: %s is in %s", ErrDenied, a, p)
			}
		}
		return nil
	}
}

// Handle applies the rate limit to t, fetches it if due, and writes the
// activity row (and, on success, the sample and its downloads row). The
// error is an error of the store (the caller should stop); what happened
// to the URL is in the Result.
func (d *Downloader) Handle(ctx context.Context, t Target) (Result, error) {
	d.Stats.Targets++
	r := Result{Target: t, First: !d.seen[t.URL]}
	d.seen[t.URL] = true
	start := d.cfg.Now().UTC()
	scheme, _, _ := cutScheme(t.URL)
	switch {
	case scheme != "http" && scheme != "https":
		r.Kind, r.Err = KindUnsupported, fmt.Errorf("%w %s", ErrUnsupportedScheme, scheme)
		r.Status = r.Err.Error()
		d.Stats.Unsupported++
	case start.Before(d.expires[t.URL]):
		r.Kind = KindSkipped
		d.Stats.Skipped++
	default:
		r.Attempted = true
		d.Stats.Fetches++
		if err := d.markTried(t.URL, start.Add(d.cfg.OncePer)); err != nil {
			return r, err
		}
		var err error
		r.SHA256, r.Size, r.Stored, err = d.fetch(ctx, t.URL)
		if err != nil {
			if isStoreError(err) {
				return r, err
			}
			r.Kind, r.Err, r.Status = KindError, err, statusText(err, d.cfg)
			d.Stats.Failures++
		} else {
			r.Kind, r.Status = KindSuccess, "success"
			d.Stats.Successes++
			if r.Stored {
				d.Stats.Stored++
			}
			if err := d.writeDownloadRow(t, r.SHA256, start); err != nil {
				return r, err
			}
		}
	}
	rdns := ""
	if r.Attempted && d.cfg.ReverseDNS {
		rdns = reverse(ctx, t.Server)
	}
	if err := d.writeActivity(t, rdns, r, start); err != nil {
		return r, err
	}
	d.log.LogAttrs(ctx, slog.LevelDebug, "download", slog.String("url", t.URL),
		slog.String("kind", string(r.Kind)), slog.String("status", r.Status), slog.String("sha256", r.SHA256))
	return r, nil
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
	stored, err = d.store(tmp, sum)
	return sum, size, stored, err
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// store moves the complete temporary file to malware/SUM/malware.bin,
// read-only, unless that sample is already there.
func (d *Downloader) store(tmp *os.File, sum string) (bool, error) {
	dir := filepath.Join(d.cfg.Dir, "malware", sum)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, storeError{fmt.Errorf("download: create %s: %w", dir, err)}
	}
	bin := filepath.Join(dir, "malware.bin")
	if _, err := os.Lstat(bin); err == nil {
		return false, nil
	}
	if err := tmp.Chmod(0o444); err != nil {
		return false, storeError{fmt.Errorf("download: chmod: %w", err)}
	}
	if err := tmp.Sync(); err != nil {
		return false, storeError{fmt.Errorf("download: sync: %w", err)}
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return false, storeError{fmt.Errorf("download: store %s: %w", bin, err)}
	}
	return true, nil
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
	case errors.Is(err, ErrTooManyRedirects), errors.Is(err, ErrDenied), errors.Is(err, ErrTooLarge):
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
