package http

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Parse errors, recorded in Detail.Error; none is final for the handler,
// which answers 400 and closes.
var (
	// ErrIncomplete says the data ends before the blank line that ends the
	// head (and the head is under its cap).
	ErrIncomplete = errors.New("incomplete head")
	// ErrRequestLine says the first line is not METHOD SP TARGET [SP VERSION].
	ErrRequestLine = errors.New("malformed request line")
)

// Request is what Parse found: the "http" object of the session event, in
// the field names of Suricata's EVE http object where it has them.
type Request struct {
	Method  string `json:"http_method"`
	URL     string `json:"url"`
	Version string `json:"protocol"`
	// Host is the first Host header without its port, Port that port
	// (0 if none), as Suricata's hostname and http_port.
	Host string `json:"hostname"`
	Port int    `json:"http_port,omitempty"`
	// UserAgent and Referer repeat the first User-Agent and Referer
	// headers.
	UserAgent string `json:"http_user_agent"`
	Referer   string `json:"http_refer,omitempty"`
	// Headers are the headers in order.
	Headers []Header `json:"request_headers,omitempty"`
	// Body is the body received, at most MaxBodyBytes (base64 in JSON).
	Body []byte `json:"body,omitempty"`
	// BodyLen counts the body bytes received, cap or not.
	BodyLen int `json:"body_len"`
	// ContentLength is the declared Content-Length, -1 if none or invalid.
	ContentLength int64 `json:"content_length"`
	// Truncated is set when the head, a header, the header count or the
	// body was cut at a cap.
	Truncated bool `json:"truncated"`
	// Error says why the request did not parse ("" if it did).
	Error string `json:"error,omitempty"`
}

// Header is one request header, as Suricata's request_headers lists them.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// splitHost splits a Host header into its name and port, as Suricata
// does: "a.test:8080" gives "a.test" and 8080, "[2001:db8::1]:80" gives
// "2001:db8::1" and 80; a port that is not a number stays in the name.
func splitHost(h string) (string, int) {
	if strings.HasPrefix(h, "[") {
		if end := strings.IndexByte(h, ']'); end > 0 {
			name, rest := h[1:end], h[end+1:]
			if p, ok := strings.CutPrefix(rest, ":"); ok {
				if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 65535 {
					return name, n
				}
			}
			if rest == "" {
				return name, 0
			}
		}
		return h, 0
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[:i], ':') < 0 {
		if n, err := strconv.Atoi(h[i+1:]); err == nil && n >= 0 && n <= 65535 {
			return h[:i], n
		}
	}
	return h, 0
}

// headEnd returns the index just past the blank line ending the head in b
// (CRLF CRLF, or bare LF LF as lenient servers accept), or -1.
func headEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	j := bytes.Index(b, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return i + 4
	case j >= 0:
		return j + 2
	}
	return -1
}

// Parse parses the request in data: the request line, the headers and the
// body that follows the head (as much of it as data holds), within lim. A
// head longer than MaxHeadBytes is parsed up to the cap and marked
// Truncated. It never panics; the error is also in Request.Error. The
// Request does not alias data.
func Parse(data []byte, lim Limits) (Request, error) {
	lim = lim.withDefaults()
	r := Request{ContentLength: -1}
	end := headEnd(data)
	head := data
	switch {
	case end >= 0 && end <= lim.MaxHeadBytes:
		head = data[:end]
	case len(data) > lim.MaxHeadBytes:
		head, end = data[:lim.MaxHeadBytes], -1
		r.Truncated = true
	}
	lines := strings.Split(strings.TrimRight(string(head), "\r\n"), "\n")
	if err := r.parseRequestLine(strings.TrimSuffix(lines[0], "\r"), lim); err != nil {
		r.Error = err.Error()
		return r, err
	}
	seenHost := false
	for _, ln := range lines[1:] {
		ln = strings.TrimSuffix(ln, "\r")
		if ln == "" {
			break
		}
		name, value, ok := strings.Cut(ln, ":")
		if !ok {
			continue // not a header: ignored, as servers do
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if len(r.Headers) >= lim.MaxHeaders {
			r.Truncated = true
			continue // the cap bounds the work and the record
		}
		name, value = clip(name, lim.MaxValueBytes, &r.Truncated), clip(value, lim.MaxValueBytes, &r.Truncated)
		r.Headers = append(r.Headers, Header{name, value})
		switch {
		case !seenHost && strings.EqualFold(name, "Host"):
			seenHost = true
			r.Host, r.Port = splitHost(value)
		case r.UserAgent == "" && strings.EqualFold(name, "User-Agent"):
			r.UserAgent = value
		case r.Referer == "" && strings.EqualFold(name, "Referer"):
			r.Referer = value
		case r.ContentLength < 0 && strings.EqualFold(name, "Content-Length"):
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 {
				r.ContentLength = n
			}
		}
	}
	if end < 0 {
		if !r.Truncated {
			r.Error = ErrIncomplete.Error()
			return r, ErrIncomplete
		}
		return r, nil
	}
	body := data[end:]
	if r.ContentLength >= 0 && int64(len(body)) > r.ContentLength {
		body = body[:r.ContentLength] // a pipelined request follows
	}
	r.BodyLen = len(body)
	if len(body) > lim.MaxBodyBytes {
		body, r.Truncated = body[:lim.MaxBodyBytes], true
	}
	if len(body) > 0 {
		r.Body = append([]byte(nil), body...)
	}
	return r, nil
}

func (r *Request) parseRequestLine(line string, lim Limits) error {
	method, rest, ok := strings.Cut(line, " ")
	if !ok || method == "" || len(method) > 16 || !isToken(method) {
		return ErrRequestLine
	}
	target, version := rest, ""
	if i := strings.LastIndexByte(rest, ' '); i >= 0 && strings.HasPrefix(rest[i+1:], "HTTP/") {
		target, version = rest[:i], rest[i+1:]
	}
	target = strings.TrimSpace(target)
	if target == "" {
		return ErrRequestLine
	}
	r.Method = method
	r.URL = clip(target, lim.MaxHeadBytes, &r.Truncated)
	r.Version = clip(version, 16, &r.Truncated)
	return nil
}

// isToken reports whether s holds only the upper-case letters and dashes
// of request methods, so that binary data is not taken for a method.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// clip cuts s to n bytes, setting *cut if it did.
func clip(s string, n int, cut *bool) string {
	if len(s) <= n {
		return s
	}
	*cut = true
	return strings.Clone(s[:n])
}
