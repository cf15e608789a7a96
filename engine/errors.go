package engine

import (
	"fmt"
)

// RunError is the outcome of a run that did not fully succeed.
type RunError struct {
	Code int
	Msg  string
}

func (e *RunError) Error() string { return e.Msg }

// ExitCode is what the process should exit with (2 failed, 4 unreachable).
func (e *RunError) ExitCode() int { return e.Code }

// UsageError is bad input (flags, inventory, extra vars): exit code 1.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is 1, like Ansible's usage and parse errors.
func (e *UsageError) ExitCode() int { return 1 }

// LoadError is a problem in a playbook, role or vars file. It exits 1.
type LoadError struct {
	Pos Pos
	Msg string
}

func (e *LoadError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ExitCode makes parse errors exit like Ansible's usage errors.
func (e *LoadError) ExitCode() int { return 1 }

func errAt(p Pos, format string, args ...any) error {
	return &LoadError{Pos: p, Msg: fmt.Sprintf(format, args...)}
}
