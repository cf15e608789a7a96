package connection

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// localShell drives the shell protocol over pipes to a local /bin/sh.
type localShell struct {
	w       io.WriteCloser
	r       *bufio.Reader
	pending []byte
}

func startLocalShell(t *testing.T) *localShell {
	t.Helper()
	sh, _ := startShellWith(t, nil, shellPreamble)
	return sh
}

// startShellWith starts /bin/sh with extra environment and the given
// preamble pending for its first request.
func startShellWith(t *testing.T, env []string, preamble string) (*localShell, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("/bin/sh")
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); _ = cmd.Wait() })
	return &localShell{w: w, r: bufio.NewReader(r), pending: []byte(preamble)}, cmd
}

func (s *localShell) run(t *testing.T, req Request) Result {
	t.Helper()
	m, f, err := frameFor(req, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Write(append(s.pending, f...)); err != nil {
		t.Fatal(err)
	}
	s.pending = nil
	res, err := readFrame(s.r, m, req.OwnShell)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
