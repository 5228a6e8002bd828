package ssh

import (
	"context"
	"errors"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "ssh" object of the session event.
type Detail struct {
	Banner          string `json:"banner"`
	Kex             string `json:"kex,omitempty"`
	HostKey         string `json:"host_key,omitempty"`
	EncC2S          string `json:"enc_c2s,omitempty"`
	EncS2C          string `json:"enc_s2c,omitempty"`
	MacC2S          string `json:"mac_c2s,omitempty"`
	MacS2C          string `json:"mac_s2c,omitempty"`
	CmpC2S          string `json:"cmp_c2s,omitempty"`
	CmpS2C          string `json:"cmp_s2c,omitempty"`
	FirstKexFollows bool   `json:"first_kex_follows"`
	HASSH           string `json:"hassh,omitempty"`
	HASSHAlgorithms string `json:"hassh_algorithms,omitempty"`
	// Truncated is set when a list was cut at MaxListBytes.
	Truncated bool `json:"truncated"`
	// Error says why no KEXINIT was recorded ("" if one was).
	Error string `json:"error,omitempty"`
}

// NewDetail returns the detail of what a client sent, the name-lists cut
// at MaxListBytes (HASSH uses them whole).
func NewDetail(c Client, err error) Detail {
	d := Detail{Banner: c.Ident}
	if err != nil {
		d.Error = err.Error()
	}
	k := c.KexInit
	if k == nil {
		return d
	}
	cut := func(s string) string {
		if len(s) > MaxListBytes {
			d.Truncated = true
			return s[:MaxListBytes]
		}
		return s
	}
	d.Kex, d.HostKey = cut(k.Kex), cut(k.HostKey)
	d.EncC2S, d.EncS2C = cut(k.EncC2S), cut(k.EncS2C)
	d.MacC2S, d.MacS2C = cut(k.MacC2S), cut(k.MacS2C)
	d.CmpC2S, d.CmpS2C = cut(k.CmpC2S), cut(k.CmpS2C)
	d.FirstKexFollows = k.FirstKexFollows
	d.HASSH = k.HASSH()
	d.HASSHAlgorithms = cut(k.HASSHAlgorithms())
	return d
}

// Serve implements handlers.Handler: banner and KEXINIT out, the client's
// banner and KEXINIT in, then close.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	out := append([]byte(h.banner+"\r\n"), h.kexinit...)
	if _, err := c.Write(out); err != nil {
		return Detail{Error: err.Error()}, budget(err)
	}
	buf := make([]byte, 0, 2048)
	var cl Client
	perr := ErrIncomplete
	for errors.Is(perr, ErrIncomplete) {
		if len(buf) == cap(buf) {
			if len(buf) >= maxReadBytes {
				break
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		n, err := c.Read(buf[len(buf):min(cap(buf), maxReadBytes)])
		buf = buf[:len(buf)+n]
		cl, perr = Parse(buf)
		if err != nil && errors.Is(perr, ErrIncomplete) {
			return NewDetail(cl, perr), budget(err)
		}
	}
	return NewDetail(cl, perr), nil
}

// maxReadBytes caps the bytes read: the lines before the identification,
// the identification and the largest KEXINIT packet.
const maxReadBytes = (maxPreLines+1)*maxIdentBytes + 4 + MaxPacketBytes

// budget keeps only the errors that say a Mux budget ended the session.
func budget(err error) error {
	if errors.Is(err, handlers.ErrBudgetExceeded) {
		return err
	}
	return nil
}
