package kafkasink

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TLS configures the connections to the brokers with TLS, as managed
// clusters require. The zero value is TLS with the system's roots and no
// client certificate.
type TLS struct {
	// CAFile is a PEM file of the CA certificates that sign the brokers'
	// certificates; empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for
	// clusters that authenticate clients by certificate (both or neither).
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry; empty
	// means the host of each broker address.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. It is for a lab
	// with a throwaway cluster only: anyone on the path can then read and
	// forge the events.
	InsecureSkipVerify bool
}

// Config reads the files and returns the client's tls.Config.
func (t TLS) Config() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented lab option
	}
	if t.CAFile != "" {
		pool, err := LoadCA(t.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, ErrCertKeyPair
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s, key %s: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// LoadCA reads a PEM file of CA certificates; a file without one is an
// error, since it would trust nothing and fail every connection later.
func LoadCA(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s: %w", name, ErrNoCertificate)
	}
	return pool, nil
}

// SASL mechanisms (the names of Kafka's sasl.mechanism, in any case).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLMechanisms lists the mechanisms SASL.Mechanism accepts.
var SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512}

// SASL authenticates the client to the brokers.
type SASL struct {
	// Mechanism is one of SASLMechanisms (case does not matter).
	Mechanism string
	// User and Password are the credentials. PLAIN sends the password as
	// it is, so use it over TLS only.
	User, Password string
}

// ReadPassword reads a password file: its first line, without the line
// end, so that `echo secret > file` works. An empty password is an error.
func ReadPassword(name string) (string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	pw := strings.TrimSuffix(string(line), "\r")
	if pw == "" {
		return "", fmt.Errorf("password file %s: %w", name, ErrEmptyPassword)
	}
	return pw, nil
}

// CheckMechanism reports whether name is a known SASL mechanism.
func CheckMechanism(name string) error {
	for _, m := range SASLMechanisms {
		if strings.EqualFold(name, m) {
			return nil
		}
	}
	return fmt.Errorf("%w %q (%s)", ErrUnknownMechanism, name, strings.Join(SASLMechanisms, ", "))
}

// FranzMechanism returns franz-go's mechanism for s.
func (s SASL) FranzMechanism() (sasl.Mechanism, error) {
	if err := CheckMechanism(s.Mechanism); err != nil {
		return nil, err
	}
	if s.User == "" {
		return nil, ErrNoUser
	}
	switch strings.ToUpper(s.Mechanism) {
	case SASLPlain:
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism(), nil
	}
}

// ClientOpts returns the franz-go options for tlsCfg and saslCfg (either
// may be nil): what a producer or a consumer of spoki's topics needs to
// reach a managed cluster.
func ClientOpts(tlsCfg *TLS, saslCfg *SASL) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if tlsCfg != nil {
		c, err := tlsCfg.Config()
		if err != nil {
			return nil, fmt.Errorf("kafkasink: tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(c))
	}
	if saslCfg != nil {
		m, err := saslCfg.FranzMechanism()
		if err != nil {
			return nil, fmt.Errorf("kafkasink: sasl: %w", err)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// Errors of the TLS and SASL settings; the caller should stop (a
// configuration error).
var (
	ErrCertKeyPair      = errors.New("client certificate and key go together: set both or neither")
	ErrNoCertificate    = errors.New("no PEM certificate in it")
	ErrUnknownMechanism = errors.New("unknown SASL mechanism")
	ErrNoUser           = errors.New("SASL needs a user")
	ErrEmptyPassword    = errors.New("empty password")
)

// isAuthError reports whether err is the brokers' refusal of the
// connection's authentication: SASL or the TLS handshake.
func isAuthError(err error) bool {
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) {
		return true
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
		header    tls.RecordHeaderError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &verify) ||
		errors.As(err, &alert) || errors.As(err, &header)
}

// authHook watches the connections' set-up: a broker that refuses the
// TLS handshake or the SASL exchange makes the events time out with a
// plain EOF or a generic error (brokers close the connection on a wrong
// password), so the cause is taken from the connection instead.
type authHook struct{ p *Publisher }

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h authHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	p := h.p
	if err == nil {
		p.authFailing.Store(false)
		return
	}
	// A refused dial is the broker being down, not authentication; past
	// the dial, a connection with TLS or SASL failing in its set-up is.
	var op *net.OpError
	if isAuthError(err) || (p.cfg.TLS != nil || p.cfg.SASL != nil) && !(errors.As(err, &op) && op.Op == "dial") {
		msg := err.Error()
		p.authErr.Store(&msg)
		p.authFailing.Store(true)
	}
}
