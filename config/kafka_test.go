package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// TestKafkaAuthCheck checks the Kafka TLS and SASL keys: a valid file
// passes and gives the publisher its settings, and each mistake is
// reported at its key's line.
func TestKafkaAuthCheck(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)

	good := "prefix: [192.0.2.0/24]\nkafka: k1:9093\nkafka-tls-ca: " + cert + "\nkafka-tls-cert: " + cert +
		"\nkafka-tls-key: " + key + "\nkafka-tls-server-name: kafka.example\nkafka-sasl: scram-sha-512\n" +
		"kafka-sasl-user: spoki\nkafka-sasl-password-file: " + pw + "\n"
	cfg := Default()
	if probs := Check([]byte(good), &cfg, true); len(probs) != 0 {
		t.Fatalf("valid file: %v", probs)
	}
	if _, err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	tl, sa, err := cfg.KafkaAuth()
	if err != nil || tl == nil || sa == nil || tl.CAFile != cert || tl.ServerName != "kafka.example" ||
		sa.Password != "s3cret" || sa.User != "spoki" || tl.InsecureSkipVerify {
		t.Errorf("KafkaAuth = %+v, %+v, %v", tl, sa, err)
	}
	cfg = Default()
	if tl, sa, err := cfg.KafkaAuth(); tl != nil || sa != nil || err != nil {
		t.Errorf("KafkaAuth of the defaults = %v, %v, %v; want no TLS, no SASL", tl, sa, err)
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string // "LINE: substring"
	}{
		{"missing CA", "kafka-tls-ca: " + filepath.Join(dir, "nope.pem") + "\n", []string{"2: kafka-tls-ca: CA file: open"}},
		{"CA not PEM", "kafka-tls-ca: " + pw + "\n", []string{"2: kafka-tls-ca: CA file " + pw + ": no PEM certificate"}},
		{"cert without key", "kafka-tls-cert: " + cert + "\n", []string{"2: kafka-tls-cert: needs kafka-tls-key"}},
		{"key without cert", "kafka-tls-key: " + key + "\n", []string{"2: kafka-tls-key: needs kafka-tls-cert"}},
		{"cert not matching key", "kafka-tls-cert: " + cert + "\nkafka-tls-key: " + pw + "\n", []string{"2: kafka-tls-cert: tls:"}},
		{"skip-verify with a CA", "kafka-tls-ca: " + cert + "\nkafka-tls-insecure-skip-verify: true\n",
			[]string{"3: kafka-tls-insecure-skip-verify: would ignore kafka-tls-ca"}},
		{"unknown mechanism", "kafka-sasl: GSSAPI\nkafka-sasl-user: u\nkafka-sasl-password-file: " + pw + "\n",
			[]string{`2: kafka-sasl: unknown SASL mechanism "GSSAPI" (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)`}},
		{"no user", "kafka-sasl: PLAIN\nkafka-sasl-password-file: " + pw + "\n", []string{"2: kafka-sasl: needs kafka-sasl-user"}},
		{"no password file", "kafka-sasl: PLAIN\nkafka-sasl-user: u\n", []string{"2: kafka-sasl: needs kafka-sasl-password-file"}},
		{"missing password file", "kafka-sasl: PLAIN\nkafka-sasl-user: u\nkafka-sasl-password-file: " + filepath.Join(dir, "nope") + "\n",
			[]string{"4: kafka-sasl-password-file: password file: open"}},
		{"empty password", "kafka-sasl: PLAIN\nkafka-sasl-user: u\nkafka-sasl-password-file: " + empty + "\n",
			[]string{"4: kafka-sasl-password-file: password file " + empty + ": empty password"}},
		{"user without sasl", "kafka-sasl-user: u\n", []string{"2: kafka-sasl-user: has no effect without kafka-sasl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			probs := Check([]byte("prefix: [192.0.2.0/24]\n"+tc.yaml), &cfg, true)
			if len(probs) != len(tc.want) {
				t.Fatalf("problems %v, want %v", probs, tc.want)
			}
			for i, w := range tc.want {
				line, sub, _ := strings.Cut(w, ": ")
				if strconv.Itoa(probs[i].Line) != line || !strings.Contains(probs[i].Msg, sub) {
					t.Errorf("problem %v, want line %s with %q", probs[i], line, sub)
				}
			}
			// The flags obey the same rules.
			if _, err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--kafka-") {
				t.Errorf("Validate = %v, want a --kafka-* error", err)
			}
		})
	}
}
