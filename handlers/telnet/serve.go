package telnet

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/spoki-telescope/spoki/analysis/urls"
	"github.com/spoki-telescope/spoki/handlers"
)

// Credential is one login attempt.
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Detail is the "telnet" object of the session event.
type Detail struct {
	// Options are the client's negotiations, e.g. "WILL NAWS".
	Options []string `json:"options,omitempty"`
	// Window is the NAWS [width, height], omitted if not sent.
	Window *[2]int `json:"window,omitempty"`
	// Term is the terminal type the client sent (TTYPE IS).
	Term        string       `json:"term,omitempty"`
	Credentials []Credential `json:"credentials"`
	LoggedIn    bool         `json:"logged_in"`
	// Commands are the shell lines, as typed.
	Commands []string `json:"commands"`
	// Truncated is set when a cap cut a list, a line or the input.
	Truncated bool `json:"truncated"`
}

// session is one connection's state.
type session struct {
	h        *Handler
	c        *handlers.Conn
	dec      Decoder
	sh       Shell
	d        Detail
	replied  [256]bool // options answered, so negotiation never loops
	attempt  int
	user     string
	state    int
	seenURLs map[string]bool
	inBytes  int
}

// Session states.
const (
	stLogin = iota
	stPassword
	stShell
	stDone
)

// Serve implements handlers.Handler: it negotiates, prompts for
// credentials and runs the shell until the client leaves, types exit, or a
// cap or budget ends the session.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	s := &session{h: h, c: c, dec: Decoder{MaxLine: h.lim.MaxLineBytes}, seenURLs: map[string]bool{}}
	s.d.Credentials, s.d.Commands = []Credential{}, []string{}
	// Speak first: what busybox telnetd offers, then the login prompt.
	greeting := []byte{iac, will, optEcho, iac, will, optSGA, iac, do, optNAWS, iac, do, optTTYPE}
	s.replied[optEcho], s.replied[optSGA], s.replied[optNAWS], s.replied[optTTYPE] = true, true, true, true
	if _, err := c.Write(append(greeting, "\r\n"+h.hostname+" login: "...)); err != nil {
		return s.detail(), budget(err)
	}
	buf := make([]byte, 2048)
	for s.state != stDone {
		if s.inBytes >= h.lim.MaxInputBytes {
			s.d.Truncated = true
			break
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		n, err := c.Read(buf[:min(len(buf), h.lim.MaxInputBytes-s.inBytes)])
		s.inBytes += n
		if werr := s.input(buf[:n]); werr != nil {
			return s.detail(), budget(werr)
		}
		if err != nil {
			if p := s.dec.Partial(); p != "" && s.state == stShell {
				s.command(p) // a last line without its newline
			}
			return s.detail(), budget(err)
		}
	}
	return s.detail(), nil
}

// budget keeps only the errors that say a Mux budget ended the session:
// silence, a hang-up or a reset are how bots leave.
func budget(err error) error {
	if errors.Is(err, handlers.ErrBudgetExceeded) {
		return err
	}
	return nil
}

func (s *session) detail() Detail {
	if s.dec.Window != ([2]int{}) {
		w := s.dec.Window
		s.d.Window = &w
	}
	s.d.Term = s.dec.Term
	if s.dec.Cut > 0 {
		s.d.Truncated = true
	}
	return s.d
}

// input handles the bytes of one read: negotiations first, then lines.
func (s *session) input(b []byte) error {
	lines, negs := s.dec.Feed(b)
	var reply []byte
	for _, n := range negs {
		if len(s.d.Options) < s.h.lim.MaxOptions {
			s.d.Options = append(s.d.Options, n.String())
		} else {
			s.d.Truncated = true
		}
		if s.replied[n.Opt] {
			continue
		}
		s.replied[n.Opt] = true
		switch n.Verb {
		case do: // we offer nothing beyond ECHO and SGA
			reply = append(reply, iac, wont, n.Opt)
		case will:
			reply = append(reply, iac, dont, n.Opt)
		}
	}
	if len(reply) > 0 {
		if _, err := s.c.Write(reply); err != nil {
			return err
		}
	}
	for _, ln := range lines {
		if s.state == stDone {
			break
		}
		if out := s.line(ln); out != "" {
			if _, err := io.WriteString(s.c, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// line handles one input line in the current state and returns the answer.
func (s *session) line(ln string) string {
	lim := s.h.lim
	switch s.state {
	case stLogin:
		if ln == "" {
			return s.h.hostname + " login: "
		}
		s.user, s.state = ln, stPassword
		return ln + "\r\nPassword: " // echo the name, as we said WILL ECHO
	case stPassword:
		s.attempt++
		if len(s.d.Credentials) < lim.MaxCredentials {
			s.d.Credentials = append(s.d.Credentials, Credential{s.user, ln})
		} else {
			s.d.Truncated = true
		}
		if s.attempt < s.h.loginAttempt {
			s.state = stLogin
			return "\r\nLogin incorrect\r\n" + s.h.hostname + " login: "
		}
		if s.attempt > lim.MaxCredentials {
			s.state = stDone
			return ""
		}
		s.d.LoggedIn, s.state = true, stShell
		return "\r\n" + s.h.banner + "# "
	case stShell:
		out, exit := s.command(ln)
		if exit {
			s.state = stDone
			return out
		}
		return ln + "\r\n" + out + "# "
	}
	return ""
}

// command records and runs one shell line; downloader commands become
// events.
func (s *session) command(ln string) (string, bool) {
	if len(s.d.Commands) >= s.h.lim.MaxCommands {
		s.d.Truncated = true
		s.state = stDone // a bot past the cap gets nothing more
		return "", true
	}
	s.d.Commands = append(s.d.Commands, ln)
	for _, d := range urls.Extract([]byte(ln)) {
		if s.seenURLs[d.Tool+" "+d.URL] {
			continue
		}
		s.seenURLs[d.Tool+" "+d.URL] = true
		_ = s.c.Emit(handlers.EventDownloader, handlers.Downloader{
			AppProto: Name, Source: "command",
			Tool: d.Tool, URL: d.URL, Server: d.Server, Port: d.Port, Name: d.Name,
		})
	}
	return s.sh.Run(ln)
}
