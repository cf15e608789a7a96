package connection

import (
	"strings"
)

// CheckResult turns a non-zero exit into an *ExitError naming the host and
// the command, so modules report failures uniformly; RC 0 gives nil.
func CheckResult(host string, req Request, res Result) error {
	if res.RC == 0 {
		return nil
	}
	return &ExitError{
		Host:   host,
		Cmd:    req.Script,
		RC:     res.RC,
		Stderr: strings.TrimSpace(string(res.Stderr)),
	}
}
