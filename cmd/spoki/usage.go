package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/config"
)

// Every command's flags go through newFlagSet and parseArgs (or
// parseInterleaved): one help style (flags with --, their values and
// defaults spelled for people), help on stdout with exit 0, and flag
// mistakes as usage errors (exit 2) that say what was wrong and where the
// help is.

// usageError is a mistake in the invocation (exit 2): unknown command or
// flag, bad flag value, missing argument. cmd is the command path ("run",
// "scenario replay") whose help the message points to.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error of command cmd; the message should start
// with cmd (as every error of a command does).
func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// stdout is where help and the completion scripts go (os.Stdout; the
// tests' buffer).
var stdout io.Writer = os.Stdout

// flagCapture, when set, receives the flag set of a command called with
// --help instead of its help being printed: the completion scripts are
// generated from the commands' own flag sets this way.
var flagCapture func(*flag.FlagSet)

// newFlagSet returns the flag set of command cmd ("run", "probe syn"),
// whose help prints synopsis (the usage lines and description, without a
// trailing newline) and then the flags.
func newFlagSet(cmd, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("spoki "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every error too: the help is printed
	// by parseArgs, for -h only.
	fs.Usage = func() {}
	synopses[fs] = synopsis
	return fs
}

// synopses holds the help text of each flag set newFlagSet made (a
// command makes one or two per run).
var synopses = map[*flag.FlagSet]string{}

// fsCommand is the command path of a flag set made by newFlagSet.
func fsCommand(fs *flag.FlagSet) string { return strings.TrimPrefix(fs.Name(), "spoki ") }

// parseArgs parses args onto fs: -h/--help prints the help and returns
// flag.ErrHelp; a mistake returns a usageError.
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	friendlyValues(fs)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		if flagCapture != nil {
			flagCapture(fs)
			return err
		}
		synopsis, ok := synopses[fs]
		if !ok {
			synopsis = "usage: " + fs.Name() + " [flags]"
		}
		printHelp(stdout, fs, synopsis)
		return err
	}
	if err != nil {
		return &usageError{cmd: fsCommand(fs), err: fmt.Errorf("%s: %s", fsCommand(fs), flagMessage(err))}
	}
	return nil
}

// parseInterleaved parses flags that may follow the positional arguments,
// as users of the original (click) are used to, and returns the
// positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseArgs(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Go's flag messages, respelled with -- and without "parse error".
var (
	reUndefined = regexp.MustCompile(`^flag provided but not defined: -+(\S+)$`)
	reInvalid   = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-+([^:\s]+): (.*)$`)
	reNeedsArg  = regexp.MustCompile(`^flag needs an argument: -+(\S+)$`)
)

// flagMessage respells an error of flag.FlagSet.Parse.
func flagMessage(err error) string {
	msg := err.Error()
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		return "unknown flag --" + m[1]
	}
	if m := reInvalid.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s %s: %s", m[2], m[1], m[3])
	}
	if m := reNeedsArg.FindStringSubmatch(msg); m != nil {
		return "--" + m[1] + " needs a value"
	}
	return msg
}

// friendlyValue wraps a flag's Value so that a bad value says what form
// is expected instead of Go's "parse error".
type friendlyValue struct {
	flag.Value
	want string
}

func (v *friendlyValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		if v.want == "" || !strings.Contains(err.Error(), "parse error") && !strings.Contains(err.Error(), "invalid syntax") {
			return err
		}
		return errors.New(v.want)
	}
	return nil
}

// IsBoolFlag keeps boolean flags boolean (no value needed).
func (v *friendlyValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// friendlyValues wraps every flag of fs once.
func friendlyValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, done := f.Value.(*friendlyValue); done {
			return
		}
		want := ""
		switch valueKind(f.Value) {
		case "duration":
			want = "want a duration like 5s, 300ms or 1m30s"
		case "int", "uint":
			want = "want a whole number"
		case "bool":
			want = "want true or false"
		case "float":
			want = "want a number"
		}
		f.Value = &friendlyValue{Value: f.Value, want: want}
	})
}

// valueKind names the type of a flag's value: duration, int, uint, bool,
// float, string, size, or "" (another type).
func valueKind(v flag.Value) string {
	if fv, ok := v.(*friendlyValue); ok {
		v = fv.Value
	}
	switch v.(type) {
	case *config.Size, *downloadBytes:
		return "size"
	}
	t := reflect.TypeOf(v).String() // the flag package's own types
	switch t {
	case "*flag.durationValue":
		return "duration"
	case "*flag.intValue", "*flag.int64Value":
		return "int"
	case "*flag.uintValue", "*flag.uint64Value":
		return "uint"
	case "*flag.boolValue":
		return "bool"
	case "*flag.float64Value":
		return "float"
	case "*flag.stringValue":
		return "string"
	}
	return ""
}

// flagValueName is the placeholder of a flag's value in the help: the
// `NAME` of its usage text, else a name from its type.
func flagValueName(f *flag.Flag) (name, usage string) {
	usage = f.Usage
	if i := strings.Index(usage, "`"); i >= 0 {
		if j := strings.Index(usage[i+1:], "`"); j >= 0 {
			name = usage[i+1 : i+1+j]
			return name, usage[:i] + name + usage[i+1+j+1:]
		}
	}
	switch valueKind(f.Value) {
	case "bool":
		return "", usage
	case "duration":
		return "DURATION", usage
	case "int", "uint":
		return "N", usage
	case "float":
		return "NUMBER", usage
	case "size":
		return "SIZE", usage
	case "string":
		return "STRING", usage
	}
	return "VALUE", usage
}

// isZeroDefault reports whether a flag's default is its type's zero value
// (not worth showing).
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]", "<nil>":
		return true
	}
	return false
}

// printHelp writes synopsis, then every flag of fs as
//
//	--name VALUE   what it does (default X)
//
// a default shown only when it is not the zero value and the text does not
// spell it already.
func printHelp(w io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintln(w, strings.TrimRight(synopsis, "\n"))
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flagValueName(f)
		left := "--" + f.Name
		if name != "" {
			left += " " + name
		}
		if !isZeroDefault(f) && !strings.Contains(usage, "default") {
			def := f.DefValue
			switch valueKind(f.Value) {
			case "string":
				def = fmt.Sprintf("%q", def)
			case "duration":
				def = shortDuration(def)
			}
			usage += " (default " + def + ")"
		}
		rows = append(rows, row{left, usage})
		if len(left) <= 30 {
			width = max(width, len(left))
		}
	})
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	for _, r := range rows {
		if len(r.left) > width {
			fmt.Fprintf(w, "  %s\n  %*s  %s\n", r.left, width, "", r.right)
			continue
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.right)
	}
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// shortDuration drops the zero units Go's Duration.String spells out:
// 10m0s → 10m, 1h0m0s → 1h.
func shortDuration(d string) string {
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}
