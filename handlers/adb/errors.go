package adb

import "errors"

// ErrMalformed is wrapped by the errors ReadMessage returns for input that
// is not an ADB message or exceeds the data cap, and by Serve's error when
// the first message is not a CNXN. It is final for the connection.
var ErrMalformed = errors.New("adb: malformed message")
