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
	// ErrDenied says that the address to connect to is refused by the
	// Policy (a *DeniedError says which and why).
	ErrDenied = errors.New("address denied")
	// ErrStoreFull says that the sample store reached Config.MaxStore.
	ErrStoreFull = errors.New("store full")
	// ErrURLTooLong says that the URL is longer than MaxURLBytes.
	ErrURLTooLong = errors.New("URL too long")
	// ErrUnsupportedScheme says that the URL is neither http nor https.
	ErrUnsupportedScheme = errors.New("unsupported scheme")
)
