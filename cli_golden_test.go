package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var lineNoRE = regexp.MustCompile(`(?m)(\.ya?ml(?: \(bundled\))?):\d+$`)

// TestGoldenListTasksAndSyntaxCheck: --list-tasks and --syntax-check of
// every example playbook and of a play of each bundled role, against
// golden files (go test -run TestGolden -update rewrites them), so a
// role or example that stops loading, or whose task list changes, shows
// here without a lab.
func TestGoldenListTasksAndSyntaxCheck(t *testing.T) {
	t.Setenv("ANSIBLE_CONFIG", "")
	type book struct{ name, inv, pb string }
	var books []book
	pbs, _ := filepath.Glob("examples/*/*.yml")
	for _, pb := range pbs {
		dir := filepath.Dir(pb)
		inv := filepath.Join(dir, "inventory.cfg")
		if _, err := os.Stat(inv); err != nil {
			inv = filepath.Join(dir, "inventory.ini")
		}
		books = append(books, book{filepath.Base(dir) + "_" + strings.TrimSuffix(filepath.Base(pb), ".yml"), inv, pb})
	}
	roles, _ := os.ReadDir("roles")
	tmp := t.TempDir()
	for _, r := range roles {
		if !r.IsDir() {
			continue
		}
		pb := filepath.Join(tmp, "role-"+r.Name()+".yml")
		if err := os.WriteFile(pb, []byte("- hosts: all\n  roles: ["+r.Name()+"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		books = append(books, book{"role_" + r.Name(), "examples/ha-cluster/inventory.cfg", pb})
	}
	if len(books) < 10 {
		t.Fatalf("only %d playbooks found", len(books))
	}
	for _, b := range books {
		for _, mode := range []string{"--list-tasks", "--syntax-check"} {
			t.Run(b.name+mode, func(t *testing.T) {
				cmd := newPlayCmd()
				var out bytes.Buffer
				cmd.SetOut(&out)
				cmd.SetErr(&out)
				cmd.SetArgs([]string{"-i", b.inv, mode, b.pb})
				if err := cmd.Execute(); err != nil {
					t.Fatalf("%v\n%s", err, out.String())
				}
				// Without line numbers: an edit above a task does not
				// change the list, a new, renamed or moved task does.
				got := lineNoRE.ReplaceAllString(strings.ReplaceAll(out.String(), tmp, "$TMP"), "$1")
				golden := filepath.Join("testdata", "golden", b.name+strings.TrimPrefix(mode, "-")+".txt")
				if *updateGolden {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -run TestGolden -update)", err)
				}
				if got != string(want) {
					t.Errorf("%s %s differs from %s:\n--- got\n%s\n--- want\n%s", mode, b.pb, golden, got, want)
				}
			})
		}
	}
}
