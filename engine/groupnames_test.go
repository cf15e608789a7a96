package engine

import (
	"strings"
	"testing"

	"gokube/roles"
)

// TestBundledRolesGroupNames: the bundled roles read their groups through
// etcd_group, kube_master_group, kube_node_group (defaults: the recipe's
// names); kubespray's names work without configuration (inventory group
// aliases), other names through the variables, and an empty or misnamed
// group stops the play at gokube-defaults, before any other task, with the
// group's name in the message.
func TestBundledRolesGroupNames(t *testing.T) {
	const hosts = "e1 ansible_host=10.0.0.1\ne2 ansible_host=10.0.0.2\n"
	for _, tc := range []struct {
		name, inv string
		wantErr   string // "" means the run succeeds with the values below
	}{
		{name: "recipe names",
			inv: "[etcd]\n" + hosts + "[kube-master]\ne1\ne2\n[kube-node]\nn1 ansible_host=10.0.0.5\n[k8s-cluster:children]\nkube-master\nkube-node\n"},
		{name: "kubespray names",
			inv: "[etcd]\n" + hosts + "[kube_control_plane]\ne1\ne2\n[kube_node]\nn1 ansible_host=10.0.0.5\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n"},
		{name: "own names through the variables",
			inv: "[etcd_prod]\n" + hosts + "[masters]\ne1\ne2\n[workers]\nn1 ansible_host=10.0.0.5\n" +
				"[all:vars]\netcd_group=etcd_prod\nkube_master_group=masters\nkube_node_group=workers\n"},
		{name: "own etcd group without etcd_group",
			inv:     "[etcd_prod]\n" + hosts + "[kube-master]\ne1\ne2\n[kube-node]\nn1 ansible_host=10.0.0.5\n",
			wantErr: "group etcd has no hosts"},
		{name: "empty etcd group",
			inv:     "[etcd]\n[kube-master]\n" + hosts + "[kube-node]\nn1 ansible_host=10.0.0.5\n",
			wantErr: "group etcd has no hosts"},
		{name: "workers without masters",
			inv:     "[etcd]\n" + hosts + "[kube_control_plane]\n[kube_node]\nn1 ansible_host=10.0.0.5\n",
			wantErr: "group kube-master has no hosts, but kube-node has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.inv, map[string]string{"site.yml": `
- hosts: all
  gather_facts: false
  roles: [gokube-defaults]
  tasks:
    - name: read the groups
      set_fact:
        initial_cluster: "{{ .etcd_initial_cluster }}"
        is_master: "{{ inGroup .kube_master_group }}"
        masters: "{{ hostsOf .kube_master_group | join \",\" }}"
        groups_entry: "{{ index .groups .kube_master_group | join \",\" }}"
        endpoint: "{{ .kube_apiserver_endpoint_host }}"
    - set_fact: {pod_cidr: "{{ .kube_node_pod_cidr }}"}
      when: inGroup .kube_node_group
`})
			o := e.opts("site.yml")
			o.BundledRoles = roles.FS
			r, err := e.run(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(e.out.String(), tc.wantErr) {
					t.Fatalf("want %q, got %v:\n%s", tc.wantErr, err, e.out.String())
				}
				for _, h := range []string{"e1", "e2", "n1"} {
					for _, ev := range eventsOf(r, h) {
						if strings.Contains(ev, "read the groups") {
							t.Errorf("%s: a task after the check ran: %v", h, ev)
						}
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, e.out.String())
			}
			for h, w := range map[string]map[string]any{
				"e1": {"initial_cluster": "e1=https://10.0.0.1:2380,e2=https://10.0.0.2:2380", "is_master": true,
					"masters": "e1,e2", "groups_entry": "e1,e2", "endpoint": "e1", "pod_cidr": nil},
				"n1": {"is_master": false, "masters": "e1,e2", "pod_cidr": "10.233.64.0/24"},
			} {
				for k, v := range w {
					if got := r.Vars[h][k]; got != v {
						t.Errorf("%s %s = %#v, want %#v", h, k, got, v)
					}
				}
			}
		})
	}
}
