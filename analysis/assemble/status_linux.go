package assemble

import (
	"os"

	"golang.org/x/sys/unix"
)

// TerminalWidth reports whether f is a terminal, and its width (80 if the
// terminal does not say).
func TerminalWidth(f *os.File) (int, bool) {
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return 0, false
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80, true
	}
	return int(ws.Col), true
}
