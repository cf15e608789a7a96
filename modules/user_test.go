package modules

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"gokube/internal/testskip"
)

// TestAccountProbesMatchGetent runs the user and group probes on this
// machine for every account in /etc/passwd and /etc/group, and for names
// that exist nowhere, and requires what getent and id answer: reading the
// files with the shell's read must not change a single probe's answer.
func TestAccountProbesMatchGetent(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		testskip.Skip(t, "getent not found")
	}
	sh := func(script string, env ...string) string {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, script)
		}
		return string(out)
	}
	names := func(file string) []string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return accountNames(string(b))
	}
	absent := absentAccounts
	users := append(names("/etc/passwd"), absent...)
	for _, u := range users {
		want := sh(getentUser(u))
		if got := sh(userProbe(u)); got != want {
			t.Errorf("user %q: probe says\n%s\ngetent and id say\n%s", u, got, want)
		}
		// An account in the files is answered without a process: with
		// nothing on PATH the answer is the same.
		if !slices.Contains(absent, u) {
			if got := sh(userProbe(u), "PATH=/gokube-nothing"); got != want {
				t.Errorf("user %q without PATH: probe says\n%s\nwant\n%s", u, got, want)
			}
		}
	}
	for _, g := range append(names("/etc/group"), absent...) {
		want := sh(getentGroup(g))
		if got := sh(groupProbe(g)); got != want {
			t.Errorf("group %q: probe says %q, getent says %q", g, got, want)
		}
		if !slices.Contains(absent, g) {
			if got := sh(groupProbe(g), "PATH=/gokube-nothing"); got != want {
				t.Errorf("group %q without PATH: probe says %q, want %q", g, got, want)
			}
		}
	}
	if len(users) < 10 {
		t.Errorf("only %d accounts compared", len(users))
	}
}

// realAccountProbes: on a lab host, whose /etc/nsswitch.conf names files
// alone for passwd and group, the user and group probes answer what
// getent and id answer for the host's accounts and for names it does not
// have, and they start neither for either (stand-ins on PATH that would
// change the answer; an absent name asked getent before).
func realAccountProbes(t *testing.T, tg *target) {
	ns := hostSh(t, tg, "grep -E '^(passwd|group):' /etc/nsswitch.conf")
	if strings.Join(strings.Fields(ns), " ") != "passwd: files group: files" {
		t.Fatalf("the lab host's nsswitch.conf is not files alone for passwd and group: %q", ns)
	}
	// On the probes' PATH, getent and id only say they were started: an
	// absent name's answer would be the same without them otherwise.
	bin := tg.dir + "/account-bin"
	hostSh(t, tg, "mkdir -p "+shq(bin)+" && for p in getent id; do printf '#!/bin/sh\\necho started\\n' >"+shq(bin)+"/$p; chmod 0755 "+shq(bin)+"/$p; done")
	path := "PATH=" + shq(bin) + "\n"
	names := func(file string) []string { return accountNames(hostSh(t, tg, "cat "+file)) }
	users := append(names("/etc/passwd"), absentAccounts...)
	for _, u := range users {
		want := hostSh(t, tg, getentUser(u))
		if got := hostSh(t, tg, path+userProbe(u)); got != want {
			t.Errorf("user %q with stand-ins for getent and id: probe says\n%s\ngetent and id say\n%s", u, got, want)
		}
	}
	groups := append(names("/etc/group"), absentAccounts...)
	for _, g := range groups {
		want := hostSh(t, tg, getentGroup(g))
		if got := hostSh(t, tg, path+groupProbe(g)); got != want {
			t.Errorf("group %q with a stand-in for getent: probe says %q, getent says %q", g, got, want)
		}
	}
	if len(users) < 10 || len(groups) < 10 {
		t.Errorf("only %d accounts and %d groups compared", len(users), len(groups))
	}
}

// absentAccounts are names no host has, some of them patterns or quotes
// that a careless probe would match or break on.
var absentAccounts = []string{"gokube-no-such-account", "r*", "root ", "a'b"}

// accountNames returns the names of an /etc/passwd or /etc/group text.
func accountNames(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if n, _, ok := strings.Cut(l, ":"); ok && n != "" {
			out = append(out, n)
		}
	}
	return out
}

// getentUser is a script printing what the user probe must: getent's
// and id's answers for name.
func getentUser(name string) string {
	q := shq(name)
	return "printf 'passwd=%s\\n' \"$(getent passwd " + q + ")\"; printf 'groups=%s\\n' \"$(id -Gn -- " + q + " 2>/dev/null)\"; printf 'primary=%s\\n' \"$(id -gn -- " + q + " 2>/dev/null)\""
}

// getentGroup is a script printing what the group probe must.
func getentGroup(name string) string {
	return "printf 'group=%s\\n' \"$(getent group " + shq(name) + ")\""
}
