package inventory

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const patternINI = `
[web]
web-[1:3]

[db]
db-1
db-2

[kube-master]
web-1
db-1

[empty]

[app:children]
web
db
`

func mustParse(t testing.TB, name, src string) *Inventory {
	t.Helper()
	inv, err := Parse(name, []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestMatch(t *testing.T) {
	inv := mustParse(t, "inventory.cfg", patternINI)
	list := filepath.Join(t.TempDir(), "limit.txt")
	if err := os.WriteFile(list, []byte("# hosts to retry\ndb-2\n\nweb-3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	allHosts := []string{"web-1", "web-2", "web-3", "db-1", "db-2"}
	for _, tc := range []struct {
		pattern string
		want    []string
		unknown []string
	}{
		{"all", allHosts, nil},
		{"*", allHosts, nil},
		{"web", []string{"web-1", "web-2", "web-3"}, nil},
		{"app", allHosts, nil},
		{"db-2", []string{"db-2"}, nil},
		{"db:web", allHosts, nil}, // union, inventory order
		{"db,web-2", []string{"web-2", "db-1", "db-2"}, nil},
		{"web:&kube-master", []string{"web-1"}, nil},
		{"&kube-master:web", []string{"web-1"}, nil}, // modifiers apply after plain terms
		{"app:!db", []string{"web-1", "web-2", "web-3"}, nil},
		{"!db", []string{"web-1", "web-2", "web-3"}, nil}, // only modifiers: start from all
		{"all:!kube-master:&app", []string{"web-2", "web-3", "db-2"}, nil},
		{"web-*", []string{"web-1", "web-2", "web-3"}, nil},
		{"*-2", []string{"web-2", "db-2"}, nil},
		{"web-[!1]", []string{"web-2", "web-3"}, nil},
		{"~db-[0-9]", []string{"db-1", "db-2"}, nil},
		{"~(web|db)-1$", []string{"web-1", "db-1"}, nil},
		{"web[0]", []string{"web-1"}, nil},
		{"web[-1]", []string{"web-3"}, nil},
		{"web[1:2]", []string{"web-2", "web-3"}, nil},
		{"web-[1:2]", []string{"web-1", "web-2"}, nil}, // range naming hosts
		{"@" + list, []string{"web-3", "db-2"}, nil},
		{"empty", []string{}, nil},
		{"web:nope", []string{"web-1", "web-2", "web-3"}, []string{"nope"}},
		{"web:!nope", []string{"web-1", "web-2", "web-3"}, []string{"nope"}},
		{"localhost", []string{"localhost"}, nil},
		{" web , db-1 ", []string{"web-1", "web-2", "web-3", "db-1"}, nil},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			got, unknown, err := inv.MatchDetail(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("hosts = %q, want %q", got, tc.want)
			}
			if !slices.Equal(unknown, tc.unknown) {
				t.Errorf("unknown = %q, want %q", unknown, tc.unknown)
			}
			m, err := inv.Match(tc.pattern)
			if err != nil || !slices.Equal(m, tc.want) {
				t.Errorf("Match = %q, %v", m, err)
			}
		})
	}
}

func TestMatchErrors(t *testing.T) {
	inv := mustParse(t, "inventory.cfg", patternINI)
	for _, tc := range []struct{ pattern, want string }{
		{"nope", `no host or group matches "nope"`},
		{"nope:&web", `"nope"`},
		{"web:&nope", `"nope"`},
		{"web*x", `"web*x"`},
		{"~(", "bad regex"},
		{"", "empty host pattern"},
		{" , ", "no terms"},
		{"web:!", "empty term"},
		{"@/nonexistent/limit", "host pattern file"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			got, err := inv.Match(tc.pattern)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Match(%q) = %q, %v; want error containing %q", tc.pattern, got, err, tc.want)
			}
		})
	}
}

func TestGroupHostsAndNames(t *testing.T) {
	inv := mustParse(t, "inventory.cfg", patternINI)
	if got := inv.GroupHosts("app"); !slices.Equal(got, []string{"web-1", "web-2", "web-3", "db-1", "db-2"}) {
		t.Errorf("GroupHosts(app) = %q", got)
	}
	if got := inv.GroupHosts("nope"); got != nil {
		t.Errorf("GroupHosts(nope) = %q", got)
	}
	want := []string{"all", "app", "db", "empty", "kube-master", "ungrouped", "web"}
	if got := inv.GroupNames(); !slices.Equal(got, want) {
		t.Errorf("GroupNames = %q, want %q", got, want)
	}
	h, ok := inv.Host("web-1")
	if !ok || !slices.Equal(h.Groups, []string{"all", "app", "kube-master", "web"}) {
		t.Errorf("web-1 groups = %v", h)
	}
	lh, ok := inv.Host("localhost")
	if !ok || lh.ConnVars().Connection != "local" || len(lh.Groups) != 0 {
		t.Errorf("implicit localhost = %+v", lh)
	}
	if _, ok := inv.Host("nope"); ok {
		t.Error("unknown host found")
	}
}

func TestFormatDetection(t *testing.T) {
	for _, tc := range []struct{ name, src, host string }{
		{"hosts", "all:\n  hosts:\n    y1:\n", "y1"},
		{"hosts", "---\n# yaml\nweb:\n  hosts: {y2: }\n", "y2"},
		{"hosts", "# ini\nn1:2222 ansible_host=a\n", "n1"},
		{"hosts", "[web]\nn2\n", "n2"},
		{"inv.json", `{"all": {"hosts": {"j1": {"ansible_port": 22}}}}`, "j1"},
		{"inv.ini", "n3 ansible_host=x\n", "n3"},
	} {
		inv, err := Parse(tc.name, []byte(tc.src), LoadOptions{})
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if _, ok := inv.Host(tc.host); !ok || len(inv.HostNames()) != 1 {
			t.Errorf("%q: hosts %q, want %s", tc.src, inv.HostNames(), tc.host)
		}
	}
}
