//go:build !unix

package modules

import "context"

// x509Flock is a no-op where flock is unavailable: runs sharing a pki folder
// are then not serialised (gokube targets Linux and macOS control machines).
func x509Flock(context.Context, string) (func(), error) { return func() {}, nil }
