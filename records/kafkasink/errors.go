package kafkasink

import "errors"

// ErrNoBrokers is returned by New without Config.Brokers; the caller should
// stop (a configuration error).
var ErrNoBrokers = errors.New("kafkasink: no brokers")

// ErrBadTopic is returned by New when the prefix or tag holds characters
// Kafka does not allow in topic names; the caller should stop.
var ErrBadTopic = errors.New("topic name may only hold ASCII letters, digits, '.', '_' and '-'")

// ErrUnflushed is wrapped by Close when events were still buffered at its
// timeout; they are counted in Stats.DropUnflushed, and the caller carries
// on shutting down.
var ErrUnflushed = errors.New("kafkasink: events left unsent")
