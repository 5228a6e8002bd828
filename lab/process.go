package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout is how long Process.Stop waits after SIGTERM before it kills.
// spoki must flush and exit well within it.
const StopTimeout = 15 * time.Second

// maxCapturedBytes caps the output a Process keeps, so that a chatty
// process (spoki's stats line every second) cannot grow a test's memory
// without bound. The oldest lines go first.
const maxCapturedBytes = 4 << 20

// Process is a background process started by Lab.Start. Its methods may be
// called concurrently.
type Process struct {
	cmd  *exec.Cmd
	name string
	echo io.Writer

	mu       sync.Mutex
	lines    []string
	dropped  int // lines evicted from the front of lines
	size     int
	changed  chan struct{} // closed and replaced on every new line and at exit
	readDone chan struct{} // closed when the output pipe reached EOF
	done     chan struct{} // closed when the process has exited
	waitErr  error

	stopOnce sync.Once
	stopErr  error
}

// startProcess starts cmd with its standard output and error on one pipe.
func startProcess(cmd *exec.Cmd, echo io.Writer) (*Process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lab: pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	p := &Process{
		cmd:      cmd,
		name:     strings.Join(cmd.Args, " "),
		echo:     echo,
		changed:  make(chan struct{}),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if len(cmd.Args) > 4 {
		p.name = filepath.Base(cmd.Args[4]) // ip netns exec NS NAME ...
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("lab: start %s: %w", p.name, err)
	}
	w.Close()
	go p.readLoop(r)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
		p.notify()
	}()
	return p, nil
}

// readLoop collects the output lines until EOF.
func (p *Process) readLoop(r *os.File) {
	defer close(p.readDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p.echo != nil {
			fmt.Fprintln(p.echo, line)
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		p.size += len(line) + 1
		for p.size > maxCapturedBytes && len(p.lines) > 1 {
			p.size -= len(p.lines[0]) + 1
			p.lines = p.lines[1:]
			p.dropped++
		}
		p.mu.Unlock()
		p.notify()
	}
}

// notify wakes up WaitFor callers.
func (p *Process) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Name returns the program's base name, for messages.
func (p *Process) Name() string { return p.name }

// Pid returns the process id (that of the program itself: `ip netns exec`
// execs it without forking).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed (nil for exit
// status 0), and nil before.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Output returns the captured output (the last 4 MiB at most).
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// WaitFor waits until a line of output contains substr. It returns
// ErrTimeout after timeout and ErrExited if the process ends first, both
// with the output's tail.
func (p *Process) WaitFor(substr string, timeout time.Duration) error {
	return p.WaitForLine(func(line string) bool { return strings.Contains(line, substr) }, substr, timeout)
}

// WaitForLine waits until match returns true for a line of output; what
// names the awaited line in errors. Lines printed before the call count.
func (p *Process) WaitForLine(match func(line string) bool, what string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := 0 // absolute index of the next line to look at
	for {
		p.mu.Lock()
		if next < p.dropped {
			next = p.dropped
		}
		for ; next-p.dropped < len(p.lines); next++ {
			if match(p.lines[next-p.dropped]) {
				p.mu.Unlock()
				return nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-p.done:
			// Let the reader drain what the process printed last.
			select {
			case <-p.readDone:
			case <-time.After(time.Second):
			}
			p.mu.Lock()
			found := false
			for i := max(next-p.dropped, 0); i < len(p.lines); i++ {
				found = found || match(p.lines[i])
			}
			p.mu.Unlock()
			if found {
				return nil
			}
			return fmt.Errorf("lab: wait for %q from %s: %w (%v):\n%s", what, p.name, ErrExited, p.Err(), p.tail(20))
		case <-deadline.C:
			return fmt.Errorf("lab: wait for %q from %s: %w after %v:\n%s", what, p.name, ErrTimeout, timeout, p.tail(20))
		case <-changed:
		}
	}
}

// tail returns the last n lines of output.
func (p *Process) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(len(p.lines)-n, 0):], "\n")
}

// Stop sends SIGTERM, waits up to StopTimeout for the process to exit, then
// kills it. It returns the exit error: nil for status 0, ErrKilled if it
// had to kill. Later calls return the same result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				// Already exited between the check and the signal.
				<-p.done
				break
			}
			select {
			case <-p.done:
			case <-time.After(StopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.done
				p.stopErr = fmt.Errorf("lab: stop %s: %w", p.name, ErrKilled)
			}
		}
		select {
		case <-p.readDone:
		case <-time.After(time.Second):
			// A grandchild holds the pipe; the output we have is enough.
		}
		if p.stopErr == nil {
			if err := p.Err(); err != nil {
				p.stopErr = fmt.Errorf("lab: %s: %w", p.name, err)
			}
		}
	})
	return p.stopErr
}
