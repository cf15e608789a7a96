package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConnVars(t *testing.T) {
	yes, no := true, false
	home, _ := os.UserHomeDir()
	for _, tc := range []struct {
		name string
		vars map[string]any
		want ConnVars
	}{
		{"defaults", nil, ConnVars{Addr: "n1", Connection: "ssh"}},
		{"ansible names", map[string]any{
			"ansible_host": "10.0.0.1", "ansible_port": 2222, "ansible_user": "core",
			"ansible_ssh_private_key_file": "/k/id", "ansible_password": "pw",
			"ansible_become": "yes", "ansible_become_user": "admin", "ansible_become_password": "bpw",
			"ansible_connection": "smart", "ansible_ssh_known_hosts_file": "~/kh",
		}, ConnVars{Addr: "10.0.0.1", Port: 2222, User: "core", KeyFile: "/k/id", Password: "pw",
			Become: &yes, BecomeUser: "admin", BecomePassword: "bpw", Connection: "ssh",
			KnownHostsFile: filepath.Join(home, "kh")}},
		{"old ssh names", map[string]any{
			"ansible_ssh_host": "h", "ansible_ssh_port": "22", "ansible_ssh_user": "u",
			"ansible_ssh_pass": "p", "ansible_become_pass": "bp", "ansible_become": false,
		}, ConnVars{Addr: "h", Port: 22, User: "u", Password: "p", BecomePassword: "bp", Become: &no, Connection: "ssh"}},
		{"ansible_host beats ansible_ssh_host", map[string]any{"ansible_host": "a", "ansible_ssh_host": "b"},
			ConnVars{Addr: "a", Connection: "ssh"}},
		{"gokube names win", map[string]any{
			"gokube_host": "g", "ansible_host": "a", "gokube_port": 2200, "ansible_port": 22,
			"gokube_user": "gu", "ansible_user": "au",
		}, ConnVars{Addr: "g", Port: 2200, User: "gu", Connection: "ssh"}},
		{"local", map[string]any{"ansible_connection": "local"}, ConnVars{Addr: "n1", Connection: "local"}},
		{"paramiko is ssh", map[string]any{"ansible_connection": "paramiko"}, ConnVars{Addr: "n1", Connection: "ssh"}},
		{"-o ProxyJump=", map[string]any{"ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o ProxyJump=core@bastion:2222"},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{User: "core", Addr: "bastion", Port: 2222}}},
		{"-oProxyJump space", map[string]any{"ansible_ssh_common_args": `-o "ProxyJump bastion"`},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{Addr: "bastion"}}},
		{"-J", map[string]any{"ansible_ssh_common_args": "-J admin@10.0.0.254"},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{User: "admin", Addr: "10.0.0.254"}}},
		{"-J ipv6", map[string]any{"ansible_ssh_common_args": "-J [2001:db8::1]:22"},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{Addr: "2001:db8::1", Port: 22}}},
		{"ProxyCommand -W", map[string]any{"ansible_ssh_common_args": `-o ProxyCommand="ssh -W %h:%p -q user@bastion"`},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{User: "user", Addr: "bastion"}}},
		{"ProxyCommand -p -l", map[string]any{"ansible_ssh_common_args": `-o ProxyCommand='ssh -o StrictHostKeyChecking=no -p 2222 -l ops -W %h:%p jump.example'`},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{User: "ops", Addr: "jump.example", Port: 2222}}},
		{"ProxyCommand nc", map[string]any{"ansible_ssh_extra_args": `-o 'ProxyCommand=ssh -q core@bastion nc %h %p'`},
			ConnVars{Addr: "n1", Connection: "ssh", ProxyJump: &Jump{User: "core", Addr: "bastion"}}},
		{"ProxyJump none", map[string]any{"ansible_ssh_common_args": "-o ProxyJump=none"},
			ConnVars{Addr: "n1", Connection: "ssh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Host{Name: "n1", Vars: tc.vars}
			got, err := h.CheckConnVars()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(h.ConnVars(), got) {
				t.Error("ConnVars differs from CheckConnVars")
			}
		})
	}
}

func TestConnVarsErrors(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"ansible_port": "{{ .p }}"}, `ansible_port: "{{ .p }}" is not a port number`},
		{map[string]any{"ansible_port": 0}, "not a port number"},
		{map[string]any{"ansible_become": "maybe"}, "not a boolean"},
		{map[string]any{"ansible_connection": "docker"}, `"docker" is not supported`},
		{map[string]any{"ansible_ssh_common_args": "-J a,b"}, "chains of jump hosts"},
		{map[string]any{"ansible_ssh_common_args": "-o ProxyCommand='ssh bastion'"}, "must forward with -W"},
		{map[string]any{"ansible_ssh_common_args": "-o ProxyCommand='ssh -J x -W %h:%p b'"}, "nested jump"},
		{map[string]any{"ansible_ssh_common_args": "-o ProxyJump=b:abc"}, `bad port "abc"`},
	} {
		h := &Host{Name: "n1", Vars: tc.vars}
		_, err := h.CheckConnVars()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "host n1") {
			t.Errorf("%v: error %v, want %q", tc.vars, err, tc.want)
		}
	}
}

// TestConnVarsFromKubespray checks the vars the engine gets for a
// kubespray inventory.cfg loaded unchanged.
func TestConnVarsFromKubespray(t *testing.T) {
	inv, err := Load("testdata/kubespray/inventory.cfg")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := inv.Host("node3")
	got := h.ConnVars()
	want := ConnVars{Addr: "95.54.0.14", Connection: "ssh", ProxyJump: &Jump{User: "core", Addr: "95.54.0.10", Port: 22}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	b, _ := inv.Host("bastion")
	if c := b.ConnVars(); c.ProxyJump != nil || c.User != "core" {
		t.Errorf("bastion conn vars = %+v", c)
	}
}

// TestINIValues pins the INI value typing documented in doc.go.
func TestINIValues(t *testing.T) {
	inv := mustParse(t, "inventory.cfg", `h1 i=42 neg=-7 pad=007 f=1.5 ver=1.30 t=true T=True F=FALSE y=yes n=None s=word q="42" sq='true' sp="a b" esc=a\ b l=[1,"x"] m="{a: 1}" ql='[1, 2]' tpl={{.x}} qtpl="{{ .y }}" hash=#comment
[all:vars]
vi=42
vq="42"
vs=hello world
vc=value ; comment
vh="with # hash"
vt=true
vl=[1, 2]
ve="tab\there"
`)
	h, _ := inv.Host("h1")
	want := map[string]any{
		"i": 42, "neg": -7, "pad": "007", "f": "1.5", "ver": "1.30", "t": true, "T": true, "F": false,
		"y": "yes", "n": nil, "s": "word", "q": "42", "sq": "true", "sp": "a b", "esc": "a b",
		"l": []any{1, "x"}, "m": map[string]any{"a": 1}, "ql": []any{1, 2}, "tpl": "{{.x}}", "qtpl": "{{ .y }}", "hash": "",
		"vi": 42, "vq": "42", "vs": "hello world", "vc": "value", "vh": "with # hash", "vt": true,
		"vl": []any{1, 2}, "ve": "tab\there",
	}
	if !reflect.DeepEqual(h.Vars, want) {
		for k, v := range want {
			if !reflect.DeepEqual(h.Vars[k], v) {
				t.Errorf("%s = %#v, want %#v", k, h.Vars[k], v)
			}
		}
		for k := range h.Vars {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected var %s = %#v", k, h.Vars[k])
			}
		}
	}
}
