package ssh

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "ssh" object of the session event, in the shape of
// Suricata's EVE ssh object: the client's and the server's side.
type Detail struct {
	Client ClientDetail `json:"client"`
	// Server is spoki's own side (its configured banner); nil when
	// nothing was sent.
	Server *Software `json:"server,omitempty"`
	// Truncated is set when a list was cut at MaxListBytes.
	Truncated bool `json:"truncated"`
	// Error says why no KEXINIT was recorded ("" if one was).
	Error string `json:"error,omitempty"`
}

// Software is an identification line's versions, as Suricata splits it:
// "SSH-2.0-OpenSSH_9.6 Ubuntu" has proto_version "2.0" and
// software_version "OpenSSH_9.6" (up to the first space).
type Software struct {
	ProtoVersion    string `json:"proto_version"`
	SoftwareVersion string `json:"software_version"`
}

// Fingerprint is a HASSH as Suricata's EVE writes it: the MD5 hash and the
// string it hashes.
type Fingerprint struct {
	Hash   string `json:"hash"`
	String string `json:"string"`
}

// ClientDetail is what the client sent: Suricata's proto_version,
// software_version and hassh {hash, string} (salesforce/hassh:
// kex;enc_c2s;mac_c2s;cmp_c2s), and spoki's own banner (the whole
// identification line) and KEXINIT name-lists.
type ClientDetail struct {
	Software
	HASSH           *Fingerprint `json:"hassh,omitempty"`
	Banner          string       `json:"banner"`
	Kex             string       `json:"kex,omitempty"`
	HostKey         string       `json:"host_key,omitempty"`
	EncC2S          string       `json:"enc_c2s,omitempty"`
	EncS2C          string       `json:"enc_s2c,omitempty"`
	MacC2S          string       `json:"mac_c2s,omitempty"`
	MacS2C          string       `json:"mac_s2c,omitempty"`
	CmpC2S          string       `json:"cmp_c2s,omitempty"`
	CmpS2C          string       `json:"cmp_s2c,omitempty"`
	FirstKexFollows bool         `json:"first_kex_follows"`
}

// ParseSoftware splits an identification line ("SSH-2.0-OpenSSH_9.6
// comment") as Suricata does; a line that does not start "SSH-" gives
// empty versions.
func ParseSoftware(ident string) Software {
	rest, ok := strings.CutPrefix(ident, "SSH-")
	if !ok {
		return Software{}
	}
	proto, sw, _ := strings.Cut(rest, "-")
	if i := strings.IndexAny(sw, " \r\n"); i >= 0 {
		sw = sw[:i]
	}
	return Software{ProtoVersion: proto, SoftwareVersion: sw}
}

// NewDetail returns the detail of what a client sent, the name-lists cut
// at MaxListBytes (HASSH uses them whole).
func NewDetail(c Client, err error) Detail {
	d := Detail{Client: ClientDetail{Software: ParseSoftware(c.Ident), Banner: c.Ident}}
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
	cd := &d.Client
	cd.Kex, cd.HostKey = cut(k.Kex), cut(k.HostKey)
	cd.EncC2S, cd.EncS2C = cut(k.EncC2S), cut(k.EncS2C)
	cd.MacC2S, cd.MacS2C = cut(k.MacC2S), cut(k.MacS2C)
	cd.CmpC2S, cd.CmpS2C = cut(k.CmpC2S), cut(k.CmpS2C)
	cd.FirstKexFollows = k.FirstKexFollows
	cd.HASSH = &Fingerprint{Hash: k.HASSH(), String: cut(k.HASSHAlgorithms())}
	return d
}

// Serve implements handlers.Handler: banner and KEXINIT out, the client's
// banner and KEXINIT in, then close.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	out := append([]byte(h.banner+"\r\n"), h.kexinit...)
	server := ParseSoftware(h.banner)
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
			d := NewDetail(cl, perr)
			d.Server = &server
			return d, budget(err)
		}
	}
	d := NewDetail(cl, perr)
	d.Server = &server
	return d, nil
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
