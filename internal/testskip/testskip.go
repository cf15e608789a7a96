// Package testskip is how a test steps aside when something it needs is
// missing. Under `make test` (GOKUBE_INTEGRATION=1) everything a test needs
// is promised (packages installed, a lab up, the Kubernetes build done), so
// there a test that would skip fails instead, naming what was missing: a
// skipped test in `make test` would be a test that does not exist.
//
// It is a leaf (standard library only), so every package's tests can use
// it, including those that internal/labtest itself imports.
package testskip

import (
	"fmt"
	"os"
	"testing"
)

// Promised says whether the environment promised everything (make test).
func Promised() bool { return os.Getenv("GOKUBE_INTEGRATION") == "1" }

// Skip skips t with the reason, or fails it when the environment promised
// everything.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if Promised() {
		t.Fatalf("would skip, but GOKUBE_INTEGRATION=1 (make test) promised what it needs: %s", reason)
		return
	}
	t.Skip(reason)
}
