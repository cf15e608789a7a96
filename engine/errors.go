package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
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

// ExitCode is what the process should exit with (2 failed, 4 unreachable,
// 99 interrupted).
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

// LoadErrors is every problem loading found: gokube keeps going after the
// first (other plays, tasks, roles, templates) so one run of
// --syntax-check shows them all, sorted by file and line.
type LoadErrors struct{ Errs []error }

// maxLoadErrors caps the list; past it the message says how many more.
const maxLoadErrors = 30

func (e *LoadErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems found before contacting any host:", len(e.Errs))
	for i, err := range e.Errs {
		if i == maxLoadErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Errs)-maxLoadErrors)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(err.Error(), "\n", "\n    "))
	}
	return b.String()
}

func (e *LoadErrors) Unwrap() []error { return e.Errs }

// ExitCode is 1, like a single LoadError.
func (e *LoadErrors) ExitCode() int { return 1 }

// JoinLoadErrors is every error of errs (nil ones ignored) as one sorted
// list, the way loading reports them: for a caller that checks the
// playbook and the -e values separately.
func JoinLoadErrors(errs ...error) error {
	var l errList
	for _, err := range errs {
		l.add(err)
	}
	return l.err()
}

// errList collects load errors; err gives nil, the only one, or a sorted
// LoadErrors without repeats.
type errList []error

// add records err (flattening a LoadErrors) and reports whether there was
// one.
func (l *errList) add(err error) bool {
	if err == nil {
		return false
	}
	if le, ok := err.(*LoadErrors); ok {
		*l = append(*l, le.Errs...)
	} else {
		*l = append(*l, err)
	}
	return true
}

func (l errList) err() error {
	seen := map[string]bool{}
	var out []error
	for _, e := range l {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	slices.SortStableFunc(out, func(a, b error) int {
		pa, oka := errPos(a)
		pb, okb := errPos(b)
		switch {
		case oka && okb:
			if c := strings.Compare(pa.File, pb.File); c != 0 {
				return c
			}
			return pa.Line - pb.Line
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return &LoadErrors{Errs: out}
}

func errPos(err error) (Pos, bool) {
	var le *LoadError
	if errors.As(err, &le) {
		return le.Pos, true
	}
	var te *TemplateError
	if errors.As(err, &te) {
		return te.Pos, true
	}
	return Pos{}, false
}
