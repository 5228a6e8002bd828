package ssh

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
)

// Parse errors, recorded in Detail.Error.
var (
	// ErrIncomplete says the data ends before the KEXINIT does.
	ErrIncomplete = errors.New("incomplete")
	// ErrNoIdent says no SSH identification line came within the caps.
	ErrNoIdent = errors.New("no ssh identification")
	// ErrPacket says the first packet is not a well-formed KEXINIT within
	// MaxPacketBytes.
	ErrPacket = errors.New("malformed kexinit")
)

// msgKexInit is SSH_MSG_KEXINIT.
const msgKexInit = 20

// KexInit holds an SSH_MSG_KEXINIT's name-lists (RFC 4253 §7.1), as sent.
type KexInit struct {
	Kex, HostKey     string
	EncC2S, EncS2C   string
	MacC2S, MacS2C   string
	CmpC2S, CmpS2C   string
	LangC2S, LangS2C string
	FirstKexFollows  bool
}

// HASSHAlgorithms returns the client's hasshAlgorithms string:
// kex;enc_c2s;mac_c2s;cmp_c2s.
func (k *KexInit) HASSHAlgorithms() string {
	return k.Kex + ";" + k.EncC2S + ";" + k.MacC2S + ";" + k.CmpC2S
}

// HASSH returns the MD5 of HASSHAlgorithms in hex (salesforce/hassh).
func (k *KexInit) HASSH() string {
	sum := md5.Sum([]byte(k.HASSHAlgorithms()))
	return hex.EncodeToString(sum[:])
}

// Client is what a client sent: its identification and its KEXINIT.
type Client struct {
	// Ident is the identification line without CR LF ("" if none yet).
	Ident string
	// KexInit is the parsed KEXINIT, nil if it did not parse.
	KexInit *KexInit
}

// Parse parses the client's side of the stream in data: optional lines,
// the "SSH-" identification line, then the first binary packet, which
// must be a KEXINIT. It returns ErrIncomplete while more data could
// complete it. It never panics and the result does not alias data.
func Parse(data []byte) (Client, error) {
	var c Client
	for i := 0; ; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			if len(data) > maxIdentBytes {
				return c, ErrNoIdent
			}
			return c, ErrIncomplete
		}
		line := data[:j]
		data = data[j+1:]
		if bytes.HasPrefix(line, []byte("SSH-")) {
			if len(line) > maxIdentBytes {
				line = line[:maxIdentBytes]
			}
			c.Ident = string(bytes.TrimSuffix(line, []byte("\r")))
			break
		}
		if j > maxIdentBytes || i >= maxPreLines {
			return c, ErrNoIdent
		}
	}
	if len(data) < 5 {
		return c, ErrIncomplete
	}
	plen := int(binary.BigEndian.Uint32(data))
	if plen < 2 || plen > MaxPacketBytes {
		return c, ErrPacket
	}
	if len(data) < 4+plen {
		return c, ErrIncomplete
	}
	pad := int(data[4])
	if pad+1 > plen {
		return c, ErrPacket
	}
	k, err := ParseKexInit(data[5 : 4+plen-pad])
	if err != nil {
		return c, err
	}
	c.KexInit = &k
	return c, nil
}

// ParseKexInit parses an SSH_MSG_KEXINIT payload (from its message type
// on).
func ParseKexInit(p []byte) (KexInit, error) {
	var k KexInit
	if len(p) < 17 || p[0] != msgKexInit {
		return k, ErrPacket
	}
	p = p[17:] // type and cookie
	lists := []*string{&k.Kex, &k.HostKey, &k.EncC2S, &k.EncS2C, &k.MacC2S, &k.MacS2C, &k.CmpC2S, &k.CmpS2C, &k.LangC2S, &k.LangS2C}
	for _, l := range lists {
		if len(p) < 4 {
			return k, ErrPacket
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(n) > uint64(len(p)-4) {
			return k, ErrPacket
		}
		*l = strings.Clone(string(p[4 : 4+n]))
		p = p[4+n:]
	}
	if len(p) >= 1 {
		k.FirstKexFollows = p[0] != 0
	}
	return k, nil
}

// serverKEXINIT returns an SSH_MSG_KEXINIT binary packet with OpenSSH
// 8.9's default server lists, so that the exchange looks like OpenSSH's
// until the client's key exchange, which spoki does not answer.
func serverKEXINIT() []byte {
	lists := []string{
		"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,sntrup761x25519-sha512@openssh.com,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256",
		"rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519",
		"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
		"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
		"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
		"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
		"none,zlib@openssh.com",
		"none,zlib@openssh.com",
		"", "",
	}
	p := []byte{msgKexInit}
	p = append(p, []byte("spoki-kexinit-16")...) // the cookie: fixed, nothing depends on it
	for _, l := range lists {
		p = binary.BigEndian.AppendUint32(p, uint32(len(l)))
		p = append(p, l...)
	}
	p = append(p, 0, 0, 0, 0, 0) // first_kex_packet_follows, reserved
	return packet(p)
}

// packet frames payload p as an unencrypted binary packet (RFC 4253 §6):
// padding to a multiple of 8, at least 4 bytes.
func packet(p []byte) []byte {
	pad := 8 - (5+len(p))%8
	if pad < 4 {
		pad += 8
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(1+len(p)+pad))
	out = append(out, byte(pad))
	out = append(out, p...)
	return append(out, make([]byte, pad)...)
}
