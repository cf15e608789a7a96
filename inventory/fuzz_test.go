package inventory

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func FuzzParseINI(f *testing.F) {
	for _, p := range []string{"testdata/full/inventory.cfg", "testdata/kubespray/inventory.cfg"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	for _, s := range []string{
		"", "h1", "[a]\nh[1:3]:22 x=1\n[b:children]\na\n[b:vars]\ny=\"q\"\n",
		"[a:children]\na\n", "h [", "h x='", "[x:vars]\n=", "n-[a:Z]", "n-[0:3:0]", "[::1]:22",
		"h ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p b\"'",
		"h m={a: [1, {b: 2}]}", "h l=[[[[[[[[[[1]]]]]]]]]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		inv, err := Parse("fuzz.cfg", []byte(src), LoadOptions{AllowPasswords: true})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.cfg") {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		checkInventory(t, inv)
	})
}

// checkInventory asserts the invariants every loaded inventory keeps.
func checkInventory(t *testing.T, inv *Inventory) {
	t.Helper()
	hosts := inv.HostNames()
	all, err := inv.Match("all")
	if err != nil || !slices.Equal(all, hosts) {
		t.Fatalf("Match(all) = %q, %v; HostNames = %q", all, err, hosts)
	}
	for _, name := range hosts {
		h, ok := inv.Host(name)
		if !ok || !slices.Contains(h.Groups, "all") || !slices.IsSorted(h.Groups) {
			t.Fatalf("host %q: %+v", name, h)
		}
		_ = h.ConnVars()
	}
	js, err := inv.ListJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatalf("ListJSON is not JSON: %v", err)
	}
	if !strings.HasPrefix(inv.Graph(), "@all:") {
		t.Fatalf("graph: %q", inv.Graph())
	}
}

func FuzzPattern(f *testing.F) {
	inv, err := Parse("inventory.cfg", []byte(patternINI), LoadOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"all", "*", "web:&kube-master", "app:!db", "~db-[0-9]", "web[1:2]", "web[-1]",
		"web-[1:2]", "a,b:c", "!", "&", "[", "~[", "web[", "web[99]", "web[5:1]", "*[!a-]*", "::1", "x:y,z"} {
		f.Add(s)
	}
	hosts := inv.HostNames()
	f.Fuzz(func(t *testing.T, pattern string) {
		if strings.Contains(pattern, "@") {
			return // @file reads the disk
		}
		got, unknown, err := inv.MatchDetail(pattern)
		if err != nil {
			return
		}
		last := -1
		for _, h := range got {
			i := slices.Index(hosts, h)
			if i < 0 && h != "localhost" && h != "127.0.0.1" && h != "::1" {
				t.Fatalf("%q matched unknown host %q", pattern, h)
			}
			if i >= 0 && i <= last {
				t.Fatalf("%q: %q not in inventory order or duplicated", pattern, got)
			}
			if i >= 0 {
				last = i
			}
		}
		m, err := inv.Match(pattern)
		if (err != nil) != (len(got) == 0 && len(unknown) > 0) {
			t.Fatalf("Match(%q) error %v with hosts %q unknown %q", pattern, err, got, unknown)
		}
		if err == nil && !slices.Equal(m, got) {
			t.Fatalf("Match and MatchDetail disagree on %q", pattern)
		}
	})
}
