package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"syscall"
	"time"
)

// Probe timeouts.
const (
	// DefaultHTTPTimeout bounds a whole HTTP probe.
	DefaultHTTPTimeout = 5 * time.Second
	// DefaultDialTimeout bounds the connect of a line probe.
	DefaultDialTimeout = 5 * time.Second
	// DefaultLineReadTimeout is how long a line probe reads the answer.
	DefaultLineReadTimeout = 2 * time.Second
	// maxLineReadBytes caps what a line probe keeps of the answer.
	maxLineReadBytes = 64 << 10
)

// HTTPResult is what an HTTP probe saw.
type HTTPResult struct {
	// Connected and Wrote report whether the TCP handshake and the
	// request's write succeeded: what the telescope needs to record a
	// session.
	Connected, Wrote bool
	// Status is the response's status line, empty without a response.
	Status string
	// BodyBytes is the length of the body read (up to 64 KiB).
	BodyBytes int
	// Err is what ended the exchange early (often a reset: the generic
	// handler resets connections), nil after a full response.
	Err error
}

// String formats the result as the CLI prints it.
func (r HTTPResult) String() string {
	switch {
	case r.Status != "":
		return fmt.Sprintf("%s (%d body bytes)", r.Status, r.BodyBytes)
	case r.Wrote:
		return "sent request; " + describeEnd(r.Err)
	case r.Connected:
		return fmt.Sprintf("connected; write failed: %v", r.Err)
	}
	return fmt.Sprintf("connect failed: %v", r.Err)
}

// ProbeHTTP sends GET url without proxies or keep-alive, within timeout (0
// means DefaultHTTPTimeout). It returns an error only when the connection
// or the request's write failed; a reset or silence afterwards is an
// expected answer of a telescope and is reported in the result.
func ProbeHTTP(ctx context.Context, url string, timeout time.Duration) (HTTPResult, error) {
	if timeout <= 0 {
		timeout = DefaultHTTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res HTTPResult
	trace := &httptrace.ClientTrace{
		ConnectDone:  func(_, _ string, err error) { res.Connected = res.Connected || err == nil },
		WroteRequest: func(info httptrace.WroteRequestInfo) { res.Wrote = info.Err == nil },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return res, fmt.Errorf("lab: http probe %s: %w", url, err)
	}
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// A telescope's redirect would lead elsewhere: report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		res.Err = err
		if !res.Connected || !res.Wrote {
			return res, fmt.Errorf("lab: http probe %s: %w", url, err)
		}
		return res, nil
	}
	defer resp.Body.Close()
	res.Status = resp.Proto + " " + resp.Status
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxLineReadBytes))
	res.BodyBytes = int(n)
	res.Err = err
	return res, nil
}

// LineResult is what a line probe saw.
type LineResult struct {
	// Received is what came back (up to 64 KiB).
	Received []byte
	// End says how the read ended: nil for EOF, else the reset or the
	// timeout.
	End error
}

// String formats the result as the CLI prints it.
func (r LineResult) String() string {
	return fmt.Sprintf("received %d bytes %q; %s", len(r.Received), r.Received, describeEnd(r.End))
}

// ProbeLine connects to addr, writes text and CRLF, and reads until EOF,
// reset or readTimeout (0 means DefaultLineReadTimeout). It returns an error
// only when the connect or the write failed.
func ProbeLine(ctx context.Context, addr, text string, readTimeout time.Duration) (LineResult, error) {
	if readTimeout <= 0 {
		readTimeout = DefaultLineReadTimeout
	}
	d := net.Dialer{Timeout: DefaultDialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return LineResult{}, fmt.Errorf("lab: line probe: connect %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(readTimeout)); err != nil {
		return LineResult{}, fmt.Errorf("lab: line probe: set deadline: %w", err)
	}
	if _, err := io.WriteString(c, text+"\r\n"); err != nil {
		return LineResult{}, fmt.Errorf("lab: line probe: write to %s: %w", addr, err)
	}
	var res LineResult
	res.Received, res.End = io.ReadAll(io.LimitReader(c, maxLineReadBytes))
	return res, nil
}

// describeEnd names how an exchange ended after the request was sent.
func describeEnd(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "connection closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without response"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "no more data before timeout"
	}
	return err.Error()
}
