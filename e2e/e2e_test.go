// Package e2e runs the gokube binary against a lab of real hosts (systemd,
// sshd, etcd) and checks the hosts' state independently of gokube's output.
//
// It needs GOKUBE_LAB_DIR (a running lab with at least 6 hosts), GOKUBE_BIN
// (the built binary) and the artifact cache; `make integration` sets them.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gokube/internal/labtest"
	"gokube/lab"
)

type env struct {
	lab  *lab.Lab
	bin  string
	root string // the repository root
}

func setup(t *testing.T) *env { t.Helper(); return setupN(t, 6) }

// setupN is setup for a test that needs only n lab hosts.
func setupN(t *testing.T, n int) *env {
	t.Helper()
	l := labtest.Require(t, n)
	bin := os.Getenv("GOKUBE_BIN")
	if bin == "" {
		t.Fatal("GOKUBE_BIN is not set")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return &env{lab: l, bin: bin, root: root}
}

// inventory writes an INI inventory of lab hosts into dir: group -> lab host
// indexes (1-based). Inventory names differ from the hosts' hostnames on
// purpose (prefix), as operators' inventories often do.
func (e *env) inventory(t *testing.T, dir, prefix string, groups map[string][]int) string {
	t.Helper()
	hosts := e.lab.Hosts()
	var b strings.Builder
	for g, idx := range groups {
		fmt.Fprintf(&b, "[%s]\n", g)
		for _, i := range idx {
			h := hosts[i-1]
			fmt.Fprintf(&b, "%s-%d ansible_host=%s\n", prefix, i, h.Addr)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "[all:vars]\nansible_user=deploy\nansible_become=true\nansible_ssh_private_key_file=%s\nansible_ssh_known_hosts_file=%s\n",
		e.lab.KeyPath(), e.lab.KnownHostsPath())
	if a := os.Getenv("GOKUBE_ARTIFACTS"); a != "" {
		fmt.Fprintf(&b, "artifacts_dir=%s\n", a)
	}
	p := filepath.Join(dir, "inventory.cfg")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type hostRecap struct{ ok, changed, unreachable, failed, skipped int }

type result struct {
	out   string
	code  int
	recap map[string]hostRecap
}

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)`)

// play runs `gokube play` and parses its PLAY RECAP.
func (e *env) play(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"play"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := result{out: out.String(), recap: map[string]hostRecap{}}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("gokube play: %v\n%s", err, r.out)
	}
	for _, m := range recapRE.FindAllStringSubmatch(r.out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		r.recap[m[1]] = hostRecap{ok: n(2), changed: n(3), unreachable: n(4), failed: n(5), skipped: n(6)}
	}
	return r
}

// ssh runs a command on lab host i (1-based) as root, through the system
// ssh client with the lab's key and known_hosts: an observer independent of
// gokube's own connection code.
func (e *env) ssh(t *testing.T, i int, command string) (string, error) {
	t.Helper()
	return labtest.SSH(e.lab, e.lab.Hosts()[i-1].Addr, command)
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "inventory.cfg" || strings.HasPrefix(rel, "pki") {
			return nil
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
