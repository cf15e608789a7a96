package engine

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// hostvarsOf hands a group's values of a variable to a module as one map;
// cidrHost computes the kubernetes service address the certificates need.
func TestHostvarsOfAndCidrHost(t *testing.T) {
	e := newEnv(t, "[kube-master]\nm-1 ansible_host=192.0.2.1\nm-2 ansible_host=192.0.2.2\n[all:vars]\nurl=https://{{ .ansible_host }}:6443\n", map[string]string{"site.yml": `
- hosts: kube-master
  gather_facts: false
  tasks:
    - name: helpers
      debug:
        msg: "{{ hostvarsOf \"kube-master\" \"url\" }}"
      register: h
    - name: cidr
      debug:
        msg: "{{ cidrHost \"10.233.0.0/18\" 1 }} {{ cidrHost \"10.233.0.0/18\" 0 }} {{ cidrHost \"fd00::/64\" 10 }} {{ difference (hostsOf \"kube-master\") (list \"m-1\" \"x\") | join \",\" }}"
      register: c
`})
	r := mustRun(t, e, e.opts("site.yml"))
	want := map[string]any{"m-1": "https://192.0.2.1:6443", "m-2": "https://192.0.2.2:6443"}
	if got := r.Vars["m-2"]["h"].(map[string]any)["msg"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("hostvarsOf: %#v", got)
	}
	if got := fmt.Sprint(r.Vars["m-1"]["c"].(map[string]any)["msg"]); got != "10.233.0.1 10.233.0.0 fd00::a m-2" {
		t.Fatalf("cidrHost: %q", got)
	}
	for _, bad := range []struct {
		cidr string
		n    any
	}{{"10.0.0.0/30", 4}, {"10.0.0.0", 1}, {"10.0.0.0/24", -1}, {"10.0.0.0/24", "x"}} {
		if _, err := cidrHost(bad.cidr, bad.n); err == nil {
			t.Errorf("cidrHost(%q, %v): no error", bad.cidr, bad.n)
		}
	}
}

func TestCidrSubnet(t *testing.T) {
	for _, c := range []struct {
		cidr       string
		newbits, n int
		want       string
	}{
		{"10.233.64.0/18", 6, 0, "10.233.64.0/24"},
		{"10.233.64.0/18", 6, 1, "10.233.65.0/24"},
		{"10.233.64.0/18", 6, 63, "10.233.127.0/24"},
		{"10.0.0.0/8", 8, 3, "10.3.0.0/16"},
	} {
		got, err := cidrSubnet(c.cidr, c.newbits, c.n)
		if err != nil || got != c.want {
			t.Errorf("cidrSubnet(%q, %d, %d) = %q, %v; want %q", c.cidr, c.newbits, c.n, got, err, c.want)
		}
	}
	for _, bad := range []struct {
		cidr       string
		newbits, n any
	}{{"10.233.64.0/18", 6, 64}, {"10.233.64.0/18", 6, -1}, {"10.233.64.0/18", 15, 0}, {"fd00::/64", 8, 0}, {"nonsense", 1, 0}} {
		if _, err := cidrSubnet(bad.cidr, bad.newbits, bad.n); err == nil {
			t.Errorf("cidrSubnet(%q, %v, %v): no error", bad.cidr, bad.newbits, bad.n)
		}
	}
}

// A loop_control key gokube cannot honour is refused, not ignored.
func TestLoopControlPauseRefused(t *testing.T) {
	e := newEnv(t, "[g]\nh1\n", map[string]string{"site.yml": `
- hosts: g
  gather_facts: false
  tasks:
    - debug: {msg: "{{ .item }}"}
      loop: [1, 2]
      loop_control: {pause: 1}
`})
	_, _, err := Load(e.opts("site.yml"))
	if err == nil || !strings.Contains(err.Error(), "pause is not supported") || !strings.Contains(err.Error(), "site.yml:7") {
		t.Fatalf("want a load error naming site.yml:7, got %v", err)
	}
}

// routesVia gives the other hosts' ranges with their addresses, sorted by
// host, and refuses a range or address that does not parse.
func TestRoutesVia(t *testing.T) {
	dsts := map[string]any{"n-2": "10.233.65.0/24", "n-1": "10.233.64.0/24", "n-3": "10.233.66.0/24"}
	vias := map[string]any{"n-1": "192.0.2.1", "n-2": "192.0.2.2", "n-3": "192.0.2.3"}
	got, err := routesVia(dsts, vias, "n-2")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		map[string]any{"host": "n-1", "dst": "10.233.64.0/24", "via": "192.0.2.1"},
		map[string]any{"host": "n-3", "dst": "10.233.66.0/24", "via": "192.0.2.3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("routesVia: %#v", got)
	}
	if got, err := routesVia(map[string]any{"n-1": "10.233.64.0/24"}, vias, "n-1"); err != nil || len(got) != 0 {
		t.Errorf("a single host routes nowhere: %v %v", got, err)
	}
	for _, bad := range []struct{ dsts, vias map[string]any }{
		{map[string]any{"n-1": "10.233.64.0"}, vias},
		{map[string]any{"n-1": "10.233.64.0/24"}, map[string]any{"n-1": "host-1"}},
		{map[string]any{"n-9": "10.233.64.0/24"}, vias},
	} {
		if _, err := routesVia(bad.dsts, bad.vias, "n-2"); err == nil {
			t.Errorf("routesVia(%v, %v): no error", bad.dsts, bad.vias)
		}
	}
}
