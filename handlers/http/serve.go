package http

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/handlers"
)

// Serve implements handlers.Handler: it reads one request (head, then the
// declared body up to the cap), answers it and closes. A client that hangs
// up or goes quiet mid-request is recorded as far as it got.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	data, err := h.readRequest(c)
	r, perr := Parse(data, h.lim)
	if errors.Is(err, handlers.ErrBudgetExceeded) {
		return r, err
	}
	if len(data) == 0 {
		return nil, nil // nothing to answer: a silent client on an http port
	}
	h.emitDownloads(c, r, data)
	status := "200 OK"
	if perr != nil {
		status = "400 Bad Request"
	}
	if r.Method == "HEAD" {
		_, err = io.WriteString(c, h.head(status))
	} else {
		_, err = io.WriteString(c, h.head(status)+h.body)
	}
	if errors.Is(err, handlers.ErrBudgetExceeded) {
		return r, err
	}
	return r, nil
}

// head returns the answer's status line and headers.
func (h *Handler) head(status string) string {
	return "HTTP/1.1 " + status + "\r\nServer: " + h.server +
		"\r\nDate: " + time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT") +
		"\r\nContent-Type: text/html\r\nContent-Length: " + strconv.Itoa(len(h.body)) +
		"\r\nConnection: close\r\n\r\n"
}

// readRequest reads the head and as much of the declared body as the caps
// allow, each read waiting at most ReadTimeout. The error is that of the
// last read (nil when the request is complete).
func (h *Handler) readRequest(c *handlers.Conn) ([]byte, error) {
	// One byte past each cap tells "cut" from "exactly the cap".
	// The buffer grows by doubling, bounded by the head and body caps.
	buf := make([]byte, 0, 1024)
	want := -1 // total bytes wanted once the head is in
	for {
		if want >= 0 && len(buf) >= want {
			return buf, nil
		}
		if want < 0 {
			if end := headEnd(buf); end >= 0 {
				r, _ := Parse(buf[:end], h.lim)
				body := int64(0)
				if r.ContentLength > 0 {
					body = min(r.ContentLength, int64(h.lim.MaxBodyBytes)+1)
				}
				want = end + int(body)
				continue
			}
			if len(buf) > h.lim.MaxHeadBytes {
				return buf, nil
			}
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		limit := cap(buf)
		if want >= 0 {
			limit = min(limit, want)
		} else {
			limit = min(limit, h.lim.MaxHeadBytes+1)
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		n, err := c.Read(buf[len(buf):limit])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
}

// emitDownloads raises a downloader event for each URL in the request line
// and the body; urls.Extract URL-decodes them as Spoki's clean did.
func (h *Handler) emitDownloads(c *handlers.Conn, r Request, data []byte) {
	seen := map[string]bool{}
	emit := func(source string, b []byte) {
		for _, d := range urls.Extract(b) {
			if seen[d.Tool+" "+d.URL] {
				continue
			}
			seen[d.Tool+" "+d.URL] = true
			_ = c.Emit(handlers.EventDownloader, handlers.Downloader{
				AppProto: Name, Source: source,
				Tool: d.Tool, URL: d.URL, Server: d.Server, Port: d.Port, Name: d.Name,
			})
		}
	}
	line := data
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		line = data[:i]
	}
	emit("request_line", line)
	if len(r.Body) > 0 {
		emit("body", r.Body)
	}
}
