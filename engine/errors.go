package engine

import (
	"errors"
	"fmt"
)

// Every error the engine returns keeps its cause: errors.Is and errors.As
// see through LoadError, RunError, TemplateError and UsageError to the
// file-system, YAML, argument or host error underneath. The ExitCode
// methods give the CLI its exit status (see main.go).

// RunError is the outcome of a run that did not fully succeed. Err joins
// (errors.Join) the failure of every host that failed or was unreachable,
// or holds the context's error when the run was interrupted; Msg stays
// the one-line summary the CLI prints.
type RunError struct {
	Code int
	Msg  string
	Err  error
}

func (e *RunError) Error() string { return e.Msg }

func (e *RunError) Unwrap() error { return e.Err }

// ExitCode is what the process should exit with (2 failed, 4 unreachable).
func (e *RunError) ExitCode() int { return e.Code }

// HostError is one host's failure in a run: the task and what went wrong.
// A RunError joins one per failed or unreachable host.
type HostError struct {
	Host        string
	Task        string
	Pos         Pos
	Msg         string
	Unreachable bool
}

func (e *HostError) Error() string {
	what := "failed"
	if e.Unreachable {
		what = "unreachable"
	}
	return fmt.Sprintf("%s: %s %s at %q: %s", e.Pos, e.Host, what, e.Task, e.Msg)
}

// UsageError is bad input (flags, inventory, extra vars): exit code 1.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is 1, like Ansible's usage and parse errors.
func (e *UsageError) ExitCode() int { return 1 }

// LoadError is a problem in a playbook, role or vars file. It exits 1. Err
// is the cause (a YAML, file-system, argument or template error) when
// there is one.
type LoadError struct {
	Pos Pos
	Msg string
	Err error
}

func (e *LoadError) Error() string { return e.Pos.String() + ": " + e.Msg }

func (e *LoadError) Unwrap() error { return e.Err }

// ExitCode makes parse errors exit like Ansible's usage errors.
func (e *LoadError) ExitCode() int { return 1 }

// errAt is a LoadError at p; a %w in format makes the wrapped error its
// cause.
func errAt(p Pos, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &LoadError{Pos: p, Msg: err.Error(), Err: errors.Unwrap(err)}
}
