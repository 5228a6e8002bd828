package config

import (
	"errors"

	"github.com/spoki-telescope/spoki/records/kafkasink"
)

// KafkaAuth returns the TLS and SASL settings of the Kafka publisher (nil
// for what is off), reading the password file.
func (c *Run) KafkaAuth() (*kafkasink.TLS, *kafkasink.SASL, error) {
	var t *kafkasink.TLS
	if c.kafkaTLSOn() {
		t = &kafkasink.TLS{CAFile: c.KafkaTLSCA, CertFile: c.KafkaTLSCert, KeyFile: c.KafkaTLSKey,
			ServerName: c.KafkaTLSServerName, InsecureSkipVerify: c.KafkaTLSInsecureSkipVerify}
	}
	if c.KafkaSASL == "" {
		return t, nil, nil
	}
	if err := c.checkSASL(); err != nil {
		return nil, nil, err
	}
	pw, err := kafkasink.ReadPassword(c.KafkaSASLPasswordFile)
	if err != nil {
		return nil, nil, err
	}
	return t, &kafkasink.SASL{Mechanism: c.KafkaSASL, User: c.KafkaSASLUser, Password: pw}, nil
}

// kafkaTLSOn reports whether the Kafka connections use TLS: any TLS key
// turns it on, since a CA or a client certificate means nothing without.
func (c *Run) kafkaTLSOn() bool {
	return c.KafkaTLS || c.KafkaTLSCA != "" || c.KafkaTLSCert != "" || c.KafkaTLSKey != "" ||
		c.KafkaTLSServerName != "" || c.KafkaTLSInsecureSkipVerify
}

// checkSASL is the rule of kafka-sasl: a known mechanism with a user and
// a password file.
func (c *Run) checkSASL() error {
	if c.KafkaSASL == "" {
		return nil
	}
	if err := kafkasink.CheckMechanism(c.KafkaSASL); err != nil {
		return err
	}
	if c.KafkaSASLUser == "" {
		return errors.New("needs kafka-sasl-user")
	}
	if c.KafkaSASLPasswordFile == "" {
		return errors.New("needs kafka-sasl-password-file")
	}
	return nil
}
