package redis

import "errors"

// ErrMalformed is wrapped by the errors ReadCommand returns for input that
// is not a Redis command or exceeds the protocol caps. It is final for the
// connection: the stream position is lost, so the handler stops.
var ErrMalformed = errors.New("redis: malformed command")
