package mqtt

import "errors"

// ErrMalformed is wrapped by the errors ReadPacket and ParseConnect return
// for input that is not MQTT or exceeds a cap. It is final for the
// connection: the handler resets it.
var ErrMalformed = errors.New("mqtt: malformed packet")
