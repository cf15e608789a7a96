package engine

import (
	"fmt"
	"reflect"
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
