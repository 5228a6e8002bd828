package download

import "errors"

// Sentinels of a fetch. They end one URL's fetch only: the caller records
// the status and goes on with the next URL.
var (
	// ErrTooLarge says that the body exceeded Config.MaxBytes; nothing was
	// stored.
	ErrTooLarge = errors.New("body exceeds the size cap")
	// ErrTooManyRedirects says that the server redirected more than
	// Config.MaxRedirects times (a loop, or a chain too long to follow).
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrDenied says that the server's address is in Config.Deny.
	ErrDenied = errors.New("address denied")
	// ErrUnsupportedScheme says that the URL is neither http nor https.
	ErrUnsupportedScheme = errors.New("unsupported scheme")
)
