package handlers_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/spoki-telescope/spoki/handlers"
)

func TestEndErr(t *testing.T) {
	errFinal := errors.New("x: malformed")
	budget := fmt.Errorf("read: idle timeout: %w: %w", handlers.ErrBudgetExceeded, os.ErrDeadlineExceeded)
	final := fmt.Errorf("frame: %w", errFinal)
	other := errors.New("connection refused")
	tests := []struct {
		name string
		err  error
		want string // the result's text, "" for nil; a result wraps err
	}{
		{"budget, though a deadline", budget, budget.Error()},
		{"final", final, final.Error()},
		{"hang-up", io.EOF, ""},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "x: read: unexpected EOF"},
		{"own deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ""},
		{"other", other, "x: connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := handlers.EndErr("x", tc.err, errFinal)
			if tc.want == "" {
				if got != nil {
					t.Errorf("EndErr(%v) = %v, want nil", tc.err, got)
				}
				return
			}
			if got == nil || got.Error() != tc.want || !errors.Is(got, tc.err) {
				t.Errorf("EndErr(%v) = %v, want %q wrapping it", tc.err, got, tc.want)
			}
		})
	}
}
