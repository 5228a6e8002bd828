package tls

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "tls" object of the session event, in the field names of
// Suricata's EVE tls object where it has them (version, sni, ja3, ja4).
type Detail struct {
	// Version is the highest version the client offers, as Suricata
	// words it ("TLS 1.2", "TLS 1.3", "SSLv3", "0x7f1c" if unknown).
	Version string `json:"version,omitempty"`
	// RecordVersion and HelloVersion are the record's and the
	// ClientHello's legacy versions (771 for 0x0303), Versions the
	// supported_versions extension.
	RecordVersion uint16   `json:"record_version"`
	HelloVersion  uint16   `json:"hello_version"`
	Versions      []uint16 `json:"versions,omitempty"`
	SNI           string   `json:"sni,omitempty"`
	ALPN          []string `json:"alpn,omitempty"`
	CipherSuites  []uint16 `json:"cipher_suites"`
	Extensions    []uint16 `json:"extensions"`
	Groups        []uint16 `json:"groups,omitempty"`
	PointFormats  []uint16 `json:"point_formats,omitempty"`
	SigAlgs       []uint16 `json:"sig_algs,omitempty"`
	SessionIDLen  int      `json:"session_id_len"`
	// JA3 is the client's JA3 as Suricata writes it; spoki sends no
	// ServerHello, so there is no ja3s.
	JA3   *Fingerprint `json:"ja3,omitempty"`
	JA4   string       `json:"ja4,omitempty"`
	JA4R  string       `json:"ja4_r,omitempty"`
	JA4O  string       `json:"ja4_o,omitempty"`
	JA4RO string       `json:"ja4_ro,omitempty"`
	// Truncated is set when a list was cut at MaxListLen.
	Truncated bool `json:"truncated"`
	// Error says why no complete ClientHello parsed ("" if one did).
	Error string `json:"error,omitempty"`
}

// Fingerprint is a JA3 (or JA3S) fingerprint as Suricata's EVE writes it:
// the MD5 hash and the string it hashes.
type Fingerprint struct {
	Hash   string `json:"hash"`
	String string `json:"string"`
}

// VersionName returns v as Suricata's EVE writes TLS versions.
func VersionName(v uint16) string {
	switch {
	case v == 0x0304:
		return "TLS 1.3"
	case v == 0x0303:
		return "TLS 1.2"
	case v == 0x0302:
		return "TLS 1.1"
	case v == 0x0301:
		return "TLS 1.0"
	case v == 0x0300:
		return "SSLv3"
	case v == 0x0200 || v == 0x0002:
		return "SSLv2"
	case v&0xff00 == 0x7f00:
		return "TLS 1.3 draft-" + strconv.Itoa(int(v&0xff))
	}
	return fmt.Sprintf("0x%04x", v)
}

// offeredVersion is the highest non-GREASE version of supported_versions,
// else the hello's legacy version.
func offeredVersion(ch *ClientHello) uint16 {
	best := uint16(0)
	for _, v := range ch.SupportedVersions {
		if !IsGREASE(v) && v > best && v < 0x7f00 {
			best = v
		}
	}
	if best == 0 {
		return ch.Version
	}
	return best
}

// NewDetail returns the detail of a parsed ClientHello: the lists capped
// at MaxListLen and the fingerprints. A nil ch gives an empty Detail.
func NewDetail(ch *ClientHello) Detail {
	var d Detail
	capList := func(vs []uint16) []uint16 {
		if len(vs) > MaxListLen {
			d.Truncated = true
			vs = vs[:MaxListLen]
		}
		return vs
	}
	d.RecordVersion, d.HelloVersion, d.SessionIDLen = ch.RecordVersion, ch.Version, ch.SessionIDLen
	d.Version = VersionName(offeredVersion(ch))
	d.Versions = capList(ch.SupportedVersions)
	d.SNI, d.ALPN = ch.SNI, ch.ALPN
	d.CipherSuites = capList(ch.CipherSuites)
	d.Extensions = capList(ch.Extensions)
	d.Groups = capList(ch.Groups)
	d.SigAlgs = capList(ch.SigAlgs)
	pf := make([]uint16, len(ch.PointFormats)) // numbers in JSON, not base64
	for i, p := range ch.PointFormats {
		pf[i] = uint16(p)
	}
	d.PointFormats = capList(pf)
	var ja3 Fingerprint
	ja3.String, ja3.Hash = ch.JA3()
	d.JA3 = &ja3
	j := ch.JA4()
	d.JA4, d.JA4R, d.JA4O, d.JA4RO = j.JA4, j.JA4R, j.JA4O, j.JA4RO
	return d
}

// maxReadBytes caps the bytes read: the largest hello plus the headers of
// the records it may be split into.
const maxReadBytes = MaxHelloBytes + 256

// alertHandshakeFailure is a fatal handshake_failure alert (TLS 1.2
// record version), what a server with no common cipher would send.
var alertHandshakeFailure = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28}

// Serve implements handlers.Handler: it reads the ClientHello (across
// records and segments), records it and closes with an alert.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	if c.First() == nil {
		return nil, nil // a silent client on a TLS port: nothing to parse
	}
	buf := make([]byte, 0, 2048)
	var ch ClientHello
	var perr, rerr error
	for {
		ch, perr = Parse(buf)
		if !errors.Is(perr, ErrIncomplete) || rerr != nil || len(buf) >= maxReadBytes {
			break
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		var n int
		n, rerr = c.Read(buf[len(buf):min(cap(buf), maxReadBytes)])
		buf = buf[:len(buf)+n]
	}
	d := Detail{Error: errString(perr)}
	if perr == nil || errors.Is(perr, ErrMalformed) {
		d = NewDetail(&ch)
		d.Error = errString(perr)
	}
	if !h.noAlert && perr == nil {
		_, _ = c.Write(alertHandshakeFailure)
	}
	if errors.Is(rerr, handlers.ErrBudgetExceeded) {
		return d, rerr
	}
	return d, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
