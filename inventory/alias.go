package inventory

// The bundled roles and examples name their groups as the recipe they
// follow does (kube-master, kube-node, k8s-cluster); kubespray has since
// renamed them (kube_control_plane, kube_node, k8s_cluster), and operators'
// inventories use either. A group name the inventory does not define means
// its partner when the inventory defines that one, so playbooks, patterns
// and roles written with one naming run on an inventory written with the
// other, without configuration. When both names are defined each means
// itself. group_vars files are matched by exact name only: a file's name is
// the operator's choice, and a file whose name matches no group is reported (Warnings).

// GroupAlias returns the other name of a renamed group, or "".
func GroupAlias(name string) string {
	switch name {
	case "kube-master":
		return "kube_control_plane"
	case "kube_control_plane":
		return "kube-master"
	case "kube-node":
		return "kube_node"
	case "kube_node":
		return "kube-node"
	case "k8s-cluster":
		return "k8s_cluster"
	case "k8s_cluster":
		return "k8s-cluster"
	}
	return ""
}

// ResolveGroup returns the name of the inventory group that name refers
// to: name itself when it is a group (or when neither it nor its alias
// is), else its alias.
func (inv *Inventory) ResolveGroup(name string) string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.resolveGroup(name)
}

func (inv *Inventory) resolveGroup(name string) string {
	if _, ok := inv.groups[name]; ok {
		return name
	}
	if a := GroupAlias(name); a != "" {
		if _, ok := inv.groups[a]; ok {
			return a
		}
	}
	return name
}
