package kafkasink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/internal/syncbuf"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// testPKI is a CA made for one test, with a broker certificate for
// loopback (and the name kafka.test) and a client certificate it signed.
type testPKI struct {
	caFile               string
	caPool               *x509.CertPool
	server               tls.Certificate
	clientCert, clientKe string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spoki test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "kafka.test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"kafka.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKe = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writePEM(t, p.clientCert, "CERTIFICATE", cDER)
	kDER, err := x509.MarshalECPrivateKey(cKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.clientKe, "EC PRIVATE KEY", kDER)
	return p
}

func writePEM(t *testing.T, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readBack consumes want records of topic with the client options opts and
// returns them; it fails the test after a timeout.
func readBack(t *testing.T, addrs []string, want int, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records of %s, want %d", len(got), topic, want)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// waitStats polls the Publisher until done holds for its Stats.
func waitStats(t *testing.T, p *Publisher, what string, done func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := p.Stats()
		if done(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSASL publishes to a kfake cluster that requires SASL, with each
// mechanism: with the right password every event arrives, with the `host`
// header; with a wrong one none does, every event is counted as an auth
// drop, the cause is logged, and Publish still returns at once.
func TestSASL(t *testing.T) {
	const events = 200
	users := map[string]string{SASLPlain: "plainuser", SASLScramSHA256: "scram256", SASLScramSHA512: "scram512"}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.EnableSASL()}
	for mech, user := range users {
		opts = append(opts, kfake.Superuser(mech, user, "right-"+user))
	}
	var topics []string
	for mech := range users {
		topics = append(topics, Topic("", "good-"+strings.ToLower(mech), "syn"), Topic("", "bad-"+strings.ToLower(mech), "syn"))
	}
	c := newCluster(t, append(opts, kfake.SeedTopics(1, topics...))...)
	addrs := c.ListenAddrs()
	for mech, user := range users {
		t.Run(mech, func(t *testing.T) {
			good, err := New(Config{Brokers: addrs, Tag: "good-" + strings.ToLower(mech), Host: "sensor-" + user,
				SASL: &SASL{Mechanism: strings.ToLower(mech), User: user, Password: "right-" + user}, Opts: fastRetries})
			if err != nil {
				t.Fatal(err)
			}
			for i := range events {
				if !good.Publish("syn", srcOf(i, 50), eventLine("syn", srcOf(i, 50), i)) {
					t.Fatalf("event %d refused", i)
				}
			}
			if err := good.Close(); err != nil {
				t.Fatal(err)
			}
			if s := good.Stats(); s.Published != events || s.DropAuth != 0 {
				t.Errorf("right password: %+v, want %d published", s, events)
			}
			admin := kgo.SASL(SASL{Mechanism: mech, User: user, Password: "right-" + user}.mustMech(t))
			recs := readBack(t, addrs, events, Topic("", "good-"+strings.ToLower(mech), "syn"), admin)
			for _, r := range recs {
				if len(r.Headers) != 1 || r.Headers[0].Key != HostHeader || string(r.Headers[0].Value) != "sensor-"+user {
					t.Fatalf("record headers %v, want host=sensor-%s", r.Headers, user)
				}
			}

			var log syncbuf.Buffer
			bad, err := New(Config{Brokers: addrs, Tag: "bad-" + strings.ToLower(mech),
				SASL:   &SASL{Mechanism: mech, User: user, Password: "wrong"},
				Logger: slog.New(slog.NewTextHandler(&log, nil)), DeliveryTimeout: 2 * time.Second, Opts: fastRetries})
			if err != nil {
				t.Fatal(err)
			}
			for i := range events {
				bad.Publish("syn", srcOf(i, 50), eventLine("syn", srcOf(i, 50), i))
			}
			s := waitStats(t, bad, "wrong password", func(s Stats) bool { return s.InFlight == 0 })
			bad.Close()
			if s.Published != 0 || s.DropAuth != events {
				t.Errorf("wrong password: %+v, want all %d dropped for auth", s, events)
			}
			if !strings.Contains(log.String(), "kafka authentication failed") {
				t.Errorf("no warning about the failed authentication in %q", log.String())
			}
			if n := storedRecords(t, addrs, Topic("", "bad-"+strings.ToLower(mech), "syn"), admin); n != 0 {
				t.Errorf("%d records stored with a wrong password", n)
			}
		})
	}
}

// storedRecords is the end offset of topic's one partition, read with opts.
func storedRecords(t *testing.T, addrs []string, topic string, opts ...kgo.Opt) int64 {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s: %v", topic, o.Err)
	}
	return o.Offset
}

func (s SASL) mustMech(t *testing.T) sasl.Mechanism {
	t.Helper()
	m, err := s.FranzMechanism()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTLS publishes to a kfake cluster behind TLS with a CA made in the
// test: with the CA file every event arrives, with a client certificate
// too; without the CA (the system's roots) the handshake fails, and that
// is counted as an auth drop.
func TestTLS(t *testing.T) {
	const events = 100
	pki := newTestPKI(t)
	topics := []string{Topic("", "tls", "syn"), Topic("", "tlscert", "syn"), Topic("", "untrusted", "syn")}
	c := newCluster(t, kfake.NumBrokers(1), kfake.SeedTopics(1, topics...),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}))
	addrs := c.ListenAddrs()
	reader := kgo.DialTLSConfig(&tls.Config{RootCAs: pki.caPool, MinVersion: tls.VersionTLS12})

	for _, tc := range []struct {
		tag string
		cfg TLS
	}{
		{"tls", TLS{CAFile: pki.caFile}},
		{"tlscert", TLS{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKe, ServerName: "kafka.test"}},
	} {
		p, err := New(Config{Brokers: addrs, Tag: tc.tag, TLS: &tc.cfg, Opts: fastRetries})
		if err != nil {
			t.Fatal(err)
		}
		for i := range events {
			p.Publish("syn", srcOf(i, 10), eventLine("syn", srcOf(i, 10), i))
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if s := p.Stats(); s.Published != events {
			t.Errorf("%s: %+v, want %d published", tc.tag, s, events)
		}
		for _, r := range readBack(t, addrs, events, Topic("", tc.tag, "syn"), reader) {
			if len(r.Headers) != 1 || string(r.Headers[0].Value) != tc.tag {
				t.Fatalf("%s: headers %v, want host=%s (the tag)", tc.tag, r.Headers, tc.tag)
			}
		}
	}

	p, err := New(Config{Brokers: addrs, Tag: "untrusted", TLS: &TLS{}, DeliveryTimeout: 2 * time.Second, Opts: fastRetries})
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		p.Publish("syn", srcOf(i, 10), eventLine("syn", srcOf(i, 10), i))
	}
	s := waitStats(t, p, "untrusted CA", func(s Stats) bool { return s.InFlight == 0 })
	p.Close()
	if s.Published != 0 || s.DropAuth != events {
		t.Errorf("untrusted CA: %+v, want all %d dropped for auth", s, events)
	}
}

// TestAuthConfigErrors checks the errors of bad TLS and SASL settings.
func TestAuthConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	for _, c := range []struct {
		name string
		tls  *TLS
		sasl *SASL
		want error
	}{
		{"missing CA", &TLS{CAFile: filepath.Join(dir, "nope.pem")}, nil, os.ErrNotExist},
		{"CA without certificate", &TLS{CAFile: notPEM}, nil, ErrNoCertificate},
		{"cert without key", &TLS{CertFile: pki.clientCert}, nil, ErrCertKeyPair},
		{"unknown mechanism", nil, &SASL{Mechanism: "GSSAPI", User: "u", Password: "p"}, ErrUnknownMechanism},
		{"no user", nil, &SASL{Mechanism: "plain", Password: "p"}, ErrNoUser},
	} {
		_, err := New(Config{Brokers: []string{"127.0.0.1:1"}, TLS: c.tls, SASL: c.sasl})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\r\nignored\n"), 0o600)
	if got, err := ReadPassword(pw); got != "s3cret" || err != nil {
		t.Errorf("ReadPassword = %q, %v", got, err)
	}
	os.WriteFile(pw, []byte("\n"), 0o600)
	if _, err := ReadPassword(pw); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("ReadPassword of an empty file: %v", err)
	}
}
