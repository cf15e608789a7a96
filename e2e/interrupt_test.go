package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInterruptedCopyLeavesNothing: Ctrl-C (SIGINT) during a large copy,
// at several points, exits 99 with "interrupted" in the recap, leaves the
// destination as it was and no temp file on the host: none in the login
// user's home (.gokube-upload-*), none beside the destination (.gokube.*).
// Each point is an event seen on the host, not a delay.
func TestInterruptedCopyLeavesNothing(t *testing.T) {
	e := setupN(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "node", map[string][]int{"nodes": {1}})
	big := filepath.Join(work, "big.bin")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// 256 MiB of incompressible-enough data: long enough to interrupt.
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for i := 0; i < 256; i++ {
		chunk[i] = byte(i) // vary the chunks a little
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	// The whole new file starts as the first chunk does, its byte 0 varied
	// above (a run that ends before the interrupt leaves it in place).
	const newHead = "\x00123456789abcdef"
	pb := filepath.Join(work, "play.yml")
	if err := os.WriteFile(pb, []byte(`
- hosts: nodes
  gather_facts: false
  tasks:
    - copy: {src: `+big+`, dest: /root/gk-big, mode: "0644"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	leftovers := "find / -xdev -name '.gokube-upload-*' -o -xdev -name '.gokube.*' -type f 2>/dev/null | grep -v '^/tmp/' || true"
	points := map[string]string{
		// the upload into the login home is under way
		"during the upload": "ls -a ~deploy | grep -q '^.gokube-upload-'",
		// the upload is done and the script copies it beside the destination
		"beside the destination": "ls -a /root | grep -q '^.gokube\\.'",
	}
	for name, reached := range points {
		t.Run(name, func(t *testing.T) {
			// The copy may pass a short window (the copy beside the
			// destination) between two polls: the run is tried again, a few
			// times; a run that ends first still must leave nothing behind.
			var out bytes.Buffer
			var err error
			hit := false
			for attempt := 0; attempt < 5 && !hit; attempt++ {
				if _, err := e.ssh(t, 1, "printf old > /root/gk-big; rm -f ~deploy/.gokube-upload-* /root/.gokube.*"); err != nil {
					t.Fatal(err)
				}
				out.Reset()
				cmd := exec.CommandContext(ctx, e.bin, "play", "-i", inv, pb)
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				ended := false
				for !hit && !ended {
					select {
					case err = <-done:
						ended = true
					default:
						_, perr := e.ssh(t, 1, reached)
						hit = perr == nil
					}
				}
				if hit {
					if serr := cmd.Process.Signal(syscall.SIGINT); serr != nil {
						if !errors.Is(serr, os.ErrProcessDone) {
							t.Fatal(serr)
						}
						hit = false // it ended between the poll and the signal
					}
					err = <-done
				}
			}
			if !hit {
				t.Logf("five runs passed %s between two polls; checking what they left", name)
				if err != nil {
					t.Errorf("the uninterrupted run failed: %v\n%s", err, out.String())
				}
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if hit && (code != 99 || !strings.Contains(out.String(), "interrupted")) {
				t.Errorf("exit %d, want 99 and \"interrupted\":\n%s", code, out.String())
			}
			if got, err := e.ssh(t, 1, "cat /root/gk-big | head -c 16"); err != nil || (got != "old" && got != newHead) {
				t.Errorf("destination is %q (%v), want the old or the whole new file", got, err)
			}
			if got, err := e.ssh(t, 1, "cat /root/gk-big | wc -c"); err != nil || (strings.TrimSpace(got) != "3" && strings.TrimSpace(got) != "268435456") {
				t.Errorf("destination has %s bytes (%v): half a file", strings.TrimSpace(got), err)
			}
			if got, err := e.ssh(t, 1, leftovers); err != nil || strings.TrimSpace(got) != "" {
				t.Errorf("left behind on the host:\n%s (%v)", got, err)
			}
		})
	}
}
