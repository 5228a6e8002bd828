package smb

import "errors"

// ErrMalformed is wrapped by the errors ReadFrame and ParseNegotiate
// return for input that is not an SMB NEGOTIATE or exceeds a cap. It is
// final for the connection: the handler resets it.
var ErrMalformed = errors.New("smb: malformed message")
