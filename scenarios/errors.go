package scenarios

import (
	"errors"
	"fmt"
)

// ErrSyntax is wrapped by every parse error (a *SyntaxError). The caller
// should fix the file: nothing was run.
var ErrSyntax = errors.New("scenarios: syntax error")

// ErrFailed is returned by Runner.Run and Replay when at least one step
// failed; the failures have been printed. The caller should exit non-zero.
var ErrFailed = errors.New("scenarios: failed")

// ErrSetup is wrapped by OpenWire's errors: the scanner host could not be
// prepared (no route, no gateway neighbour entry, an address already in
// use). The caller should stop; whatever was set up has been undone.
var ErrSetup = errors.New("scenarios: set-up")

// SyntaxError is a parse error at a line of a file.
type SyntaxError struct {
	// File is the file's name as given to ParseFile (or Parse).
	File string
	// Line is the 1-based line number.
	Line int
	// Msg says what is wrong, lower-case, without the position.
	Msg string
}

// Error implements error: "FILE:LINE: MSG".
func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Unwrap returns ErrSyntax, so that errors.Is(err, ErrSyntax) holds.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }
