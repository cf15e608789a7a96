package inventory

import (
	"slices"
	"testing"
)

// TestGroupAliases: the recipe's and kubespray's names of a renamed group
// mean the group the inventory defines, in patterns and GroupHosts; a name
// the inventory defines means itself.
func TestGroupAliases(t *testing.T) {
	const kubespray = "[kube_control_plane]\nm1\nm2\n[kube_node]\nn1\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n"
	const recipe = "[kube-master]\nm1\nm2\n[kube-node]\nn1\n[k8s-cluster:children]\nkube-master\nkube-node\n"
	const both = "[kube-master]\nm1\n[kube_control_plane]\nm2\n"
	for _, tc := range []struct {
		inv, pattern string
		want         []string
	}{
		{kubespray, "kube-master", []string{"m1", "m2"}},
		{kubespray, "kube-node", []string{"n1"}},
		{kubespray, "k8s-cluster:!kube-master", []string{"n1"}},
		{kubespray, "kube-master[0]", []string{"m1"}},
		{recipe, "kube_control_plane", []string{"m1", "m2"}},
		{recipe, "k8s_cluster", []string{"m1", "m2", "n1"}},
		{recipe, "kube_node", []string{"n1"}},
		{both, "kube-master", []string{"m1"}},
		{both, "kube_control_plane", []string{"m2"}},
	} {
		inv := mustParse(t, "inv.ini", tc.inv)
		got, err := inv.Match(tc.pattern)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q on %q: got %v %v, want %v", tc.pattern, tc.inv, got, err, tc.want)
		}
		if !slices.ContainsFunc([]byte(tc.pattern), func(c byte) bool { return c == ':' || c == '[' }) {
			if gh := inv.GroupHosts(tc.pattern); !slices.Equal(gh, tc.want) {
				t.Errorf("GroupHosts(%q) on %q: %v, want %v", tc.pattern, tc.inv, gh, tc.want)
			}
		}
	}
	if got := mustParse(t, "inv.ini", "[etcd]\ne1\n").ResolveGroup("kube-master"); got != "kube-master" {
		t.Errorf("neither name defined: ResolveGroup = %q", got)
	}
}
