package tds

import "errors"

// ErrMalformed is wrapped by the errors of ReadMessage, ParsePrelogin and
// ParseLogin7 for input that is not TDS or exceeds a cap. It is final for
// the connection: the handler resets it.
var ErrMalformed = errors.New("tds: malformed message")
