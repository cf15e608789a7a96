package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree creates files (path -> content) under a fresh directory.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPrecedence has one case per level of the merge order:
// all < parent group < child group < host, and inside each level the
// inventory file < inventory-side vars files < playbook-side vars files.
func TestPrecedence(t *testing.T) {
	const inv3 = "[parent:children]\nchild\n[child]\nh1\n[other]\nh2\n"
	for _, tc := range []struct {
		name  string
		files map[string]string // inventory is inv/hosts; playbook side is play/
		want  any
	}{
		{"all only", map[string]string{
			"inv/hosts": inv3 + "[all:vars]\nx=all\n"}, "all"},
		{"parent beats all", map[string]string{
			"inv/hosts": inv3 + "[all:vars]\nx=all\n[parent:vars]\nx=parent\n"}, "parent"},
		{"child beats parent", map[string]string{
			"inv/hosts": inv3 + "[child:vars]\nx=child\n[parent:vars]\nx=parent\n"}, "child"},
		{"host beats child", map[string]string{
			"inv/hosts": "[parent:children]\nchild\n[child]\nh1 x=host\n[child:vars]\nx=child\n"}, "host"},
		{"equal depth: later name wins", map[string]string{
			"inv/hosts": "[b]\nh1\n[a]\nh1\n[a:vars]\nx=a\n[b:vars]\nx=b\n"}, "b"},
		{"equal depth: ansible_group_priority", map[string]string{
			"inv/hosts": "[b]\nh1\n[a]\nh1\n[a:vars]\nx=a\nansible_group_priority=10\n[b:vars]\nx=b\n"}, "a"},
		{"inventory group_vars beat inventory file at same group", map[string]string{
			"inv/hosts":                inv3 + "[child:vars]\nx=file\n",
			"inv/group_vars/child.yml": "x: group_vars\n"}, "group_vars"},
		{"playbook group_vars beat inventory group_vars", map[string]string{
			"inv/hosts":                  inv3,
			"inv/group_vars/child.yml":   "x: inv\n",
			"play/group_vars/child.yaml": "x: play\n"}, "play"},
		{"child inventory file beats parent playbook group_vars", map[string]string{
			"inv/hosts":              inv3 + "[child:vars]\nx=child\n",
			"play/group_vars/parent": "x: parent-play\n"}, "child"},
		{"host_vars beat inline host vars", map[string]string{
			"inv/hosts":            "[child]\nh1 x=inline\n",
			"inv/host_vars/h1.yml": "x: host_vars\n"}, "host_vars"},
		{"playbook host_vars beat inventory host_vars", map[string]string{
			"inv/hosts":              "[child]\nh1 x=inline\n",
			"inv/host_vars/h1.yml":   "x: inv\n",
			"play/host_vars/h1.json": `{"x": "play"}`}, "play"},
		{"inline host var beats playbook group_vars", map[string]string{
			"inv/hosts":             "[child]\nh1 x=inline\n",
			"play/group_vars/child": "x: play-group\n"}, "inline"},
		{"group_vars folder merged in lexical order", map[string]string{
			"inv/hosts":                      inv3,
			"inv/group_vars/child/b.yml":     "x: b\n",
			"inv/group_vars/child/a.yml":     "x: a\ny: a\n",
			"inv/group_vars/child/sub/c.yml": "x: c\n",
			"inv/group_vars/child/d.txt":     "x: ignored\n"}, "c"},
		{"folder is used before NAME.yml", map[string]string{
			"inv/hosts":                  inv3,
			"inv/group_vars/child.yml":   "x: file\n",
			"inv/group_vars/child/x.yml": "x: folder\n"}, "folder"},
		{"all group_vars file loses to inventory file parent", map[string]string{
			"inv/hosts":              inv3 + "[parent:vars]\nx=parent\n",
			"inv/group_vars/all.yml": "x: all-file\n"}, "parent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			inv, err := Load(filepath.Join(dir, "inv/hosts"))
			if err != nil {
				t.Fatal(err)
			}
			if err := inv.AddVarsDir(filepath.Join(dir, "play")); err != nil {
				t.Fatal(err)
			}
			h, ok := inv.Host("h1")
			if !ok {
				t.Fatal("no h1")
			}
			if h.Vars["x"] != tc.want {
				t.Errorf("x = %#v (from %s), want %#v", h.Vars["x"], inv.VarSource("h1", "x"), tc.want)
			}
		})
	}
}

func TestVarSourceAndWarnings(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"hosts":                      "[web]\nh1\n[k8s-cluster:children]\nweb\n",
		"group_vars/k8s_cluster.yml": "x: 1\n",
		"group_vars/web.yml":         "a: 1\n\nb: 2\na: 3\n",
		"group_vars/web.yaml":        "a: shadowed\n",
		"group_vars/webb.yml":        "typo: 1\n",
		"host_vars/ghost.yml":        "x: 1\n",
		"group_vars/.hidden.yml":     "x: 1\n",
	})
	inv, err := Load(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inv.VarSource("h1", "b"), filepath.Join(dir, "group_vars/web.yml")+":3"; got != want {
		t.Errorf("VarSource = %q, want %q", got, want)
	}
	w := strings.Join(inv.Warnings(), "\n")
	for _, s := range []string{"web.yml:4: duplicate key \"a\" (first at line 1)", "web.yaml ignored", "webb.yml: no group", "ghost.yml: no host",
		"k8s_cluster.yml: no group of that name in the inventory; ignored (did you mean k8s-cluster? - and _ differ)"} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings lack %q:\n%s", s, w)
		}
	}
	if strings.Contains(w, "hidden") {
		t.Errorf("hidden file warned about:\n%s", w)
	}
}

// TestNoAliasing checks that merged vars are deep copies: changing one
// host's nested value affects neither another host nor later lookups.
func TestNoAliasing(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"hosts":              "[web]\nh1\nh2\n",
		"group_vars/web.yml": "nested: {list: [1, 2], map: {k: v}}\n",
	})
	inv, err := Load(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := inv.Host("h1")
	nested := h1.Vars["nested"].(map[string]any)
	nested["list"].([]any)[0] = "changed"
	nested["map"].(map[string]any)["k"] = "changed"
	for _, name := range []string{"h1", "h2"} {
		h, _ := inv.Host(name)
		n := h.Vars["nested"].(map[string]any)
		if n["list"].([]any)[0] != 1 || n["map"].(map[string]any)["k"] != "v" {
			t.Errorf("%s sees a change made through another copy: %v", name, n)
		}
	}
}

func TestAddVarsDirErrorLeavesInventory(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"inv/hosts":               "[web]\nh1 x=1\n",
		"play/group_vars/web.yml": "y: play\n",
		"play/host_vars/h1.yml":   "z: [unclosed\n",
		"pw/group_vars/web.yml":   "ansible_password: hunter2\n",
	})
	inv, err := Load(filepath.Join(dir, "inv/hosts"))
	if err != nil {
		t.Fatal(err)
	}
	err = inv.AddVarsDir(filepath.Join(dir, "play"))
	if err == nil || !strings.Contains(err.Error(), "h1.yml:1") {
		t.Fatalf("AddVarsDir error = %v, want h1.yml:1", err)
	}
	err = inv.AddVarsDir(filepath.Join(dir, "pw"))
	if err == nil || !strings.Contains(err.Error(), "web.yml:1: ansible_password") {
		t.Fatalf("AddVarsDir error = %v, want refused password at web.yml:1", err)
	}
	h, _ := inv.Host("h1")
	if _, ok := h.Vars["y"]; ok {
		t.Errorf("vars of a failed AddVarsDir stayed: y = %v", h.Vars["y"])
	}
	if _, ok := h.Vars["ansible_password"]; ok {
		t.Error("refused password stayed")
	}
	// Playbook dir equal to the inventory dir: nothing changes.
	if err := inv.AddVarsDir(filepath.Join(dir, "inv")); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"inv/10-hosts.ini":        "[web]\nw1\n",
		"inv/20-more.yml":         "all:\n  children:\n    web:\n      hosts:\n        w2:\n",
		"inv/ansible.cfg":         "[defaults]\nnot = an inventory\n",
		"inv/README.md":           "# notes\n",
		"inv/group_vars/web.yml":  "x: from-dir\n",
		"inv/host_vars/w2/a.yml":  "y: 1\n",
		"inv/host_vars/w2/b.json": `{"y": 2}`,
	})
	inv, err := Load(filepath.Join(dir, "inv"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inv.HostNames(), ","); got != "w1,w2" {
		t.Errorf("hosts = %s", got)
	}
	h, _ := inv.Host("w2")
	if h.Vars["x"] != "from-dir" || h.Vars["y"] != 2 {
		t.Errorf("w2 vars = %v", h.Vars)
	}
	if g := h.GroupNames(); len(g) != 1 || g[0] != "web" {
		t.Errorf("GroupNames = %v", g)
	}
	if _, err := Load(filepath.Join(dir, "inv/group_vars/nothing")); err == nil {
		t.Error("missing path loaded")
	}
	empty := writeTree(t, map[string]string{"e/notes.txt": "x"})
	if _, err := Load(filepath.Join(empty, "e")); err == nil || !strings.Contains(err.Error(), "no inventory file") {
		t.Errorf("empty dir: %v", err)
	}
}
