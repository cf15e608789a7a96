package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gokube/internal/labtest"
)

// playCLI runs `gokube play ARGS` in-process and returns its output.
func playCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newPlayCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// On real hosts: a run where one host fails writes the retry file and
// prints a command; that command (run as printed) runs only the failed
// host, and once it succeeds the retry file is gone.
func TestRetryFileLab(t *testing.T) {
	l := labtest.Require(t, 2)
	hosts := l.Hosts()
	marker := "/tmp/gk-retry-" + filepath.Base(t.TempDir())
	for i, h := range hosts[:2] {
		cmd := "rm -f " + marker
		if i == 0 {
			cmd = "touch " + marker
		}
		if out, err := labtest.SSH(l, h.Addr, cmd); err != nil {
			t.Fatalf("%s: %v %s", h.Name, err, out)
		}
		t.Cleanup(func() { labtest.SSH(l, h.Addr, "rm -f "+marker) })
	}
	dir := t.TempDir()
	pb := filepath.Join(dir, "site.yml")
	os.WriteFile(pb, []byte(`- hosts: all
  gather_facts: false
  tasks:
    - name: needs the marker
      command: test -e `+marker+"\n"), 0o644)
	limit := hosts[0].Name + ":" + hosts[1].Name
	out, err := playCLI(t, "-i", l.InventoryPath(), pb, "--limit", limit, "-e", `{"note": "it's"}`)
	if err == nil {
		t.Fatalf("want a failure:\n%s", out)
	}
	retry := filepath.Join(dir, "site.retry")
	if b, _ := os.ReadFile(retry); string(b) != hosts[1].Name+"\n" {
		t.Fatalf("retry file %q\n%s", b, out)
	}
	_, line, ok := strings.Cut(out, "To retry only them:\n")
	words := strings.Fields(strings.TrimSpace(line))
	if !ok || len(words) < 3 || words[1] != "play" || !strings.HasSuffix(line, "--limit @"+retry+"\n") || strings.Contains(line, limit) ||
		!strings.Contains(line, `--extra-vars '{"note": "it'\''s"}'`) {
		t.Fatalf("retry command %q", line)
	}
	if out, err := labtest.SSH(l, hosts[1].Addr, "touch "+marker); err != nil {
		t.Fatal(err, out)
	}
	// Run the printed command as a shell would split it.
	args, err := shellSplit(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	out, err = playCLI(t, args[2:]...)
	if err != nil {
		t.Fatalf("retry run: %v\n%s", err, out)
	}
	if strings.Contains(out, hosts[0].Name) || !strings.Contains(out, hosts[1].Name+" : ok=1") {
		t.Fatalf("retry ran other hosts:\n%s", out)
	}
	if _, err := os.Stat(retry); !os.IsNotExist(err) || !strings.Contains(out, "removed it") {
		t.Fatalf("retry file not removed after success: %v\n%s", err, out)
	}
}

// shellSplit splits a command line the way retryCommand quotes it
// (plain words, and single-quoted words with an escaped quote inside).
func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, has := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\'':
			in = false
		case in:
			cur.WriteByte(c)
		case c == '\'':
			in, has = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			has = true
		case c == ' ':
			if has || cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if has || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}
