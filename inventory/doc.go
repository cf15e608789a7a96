// Package inventory reads Ansible inventories (INI and YAML) with their
// group_vars/ and host_vars/, merges every host's variables, selects hosts
// by Ansible host patterns and prints what `ansible-inventory --list` and
// `--graph` print. It is a leaf: the engine builds on it, it imports only
// the standard library and yaml.v3.
//
// # Formats
//
// Load picks YAML for .yml, .yaml and .json files, INI for .ini and .cfg,
// and otherwise looks at the first meaningful line ("key:" or "---" means
// YAML).
//
// INI, as Ansible reads it:
//
//	# comment            ; comment too (at the start of a line)
//	bastion ansible_host=192.0.2.10        # before any section: ungrouped
//	[kube-master]                          # dashes in group names are fine
//	master-[01:03] etcd_member_name=etcd   # ranges: [1:3] [01:10] [a:c] [0:10:2]
//	10.0.0.[1:9]:2222                      # host:port sets ansible_port
//	[k8s-cluster:children]
//	kube-master
//	[k8s-cluster:vars]
//	kube_version=v1.30.2
//
// Host lines are split like a shell (Python's shlex, which Ansible uses):
// quotes group words, backslash escapes, and an unquoted # starts a
// comment. In [group:vars] the value is the rest of the line; a " # ..."
// or " ; ..." after whitespace is a comment (quote the value to keep one).
// A group named in [x:children] or [x:vars] must be declared by its own
// section somewhere ([x] or [x:children]); cycles are errors.
//
// Value types (Ansible runs INI values through Python's literal_eval; gokube
// keeps the useful part, the same way in host lines and in :vars):
// integers without leading zeros become int (ansible_port=2222, but
// "007" stays a string); true/True/TRUE and false/False/FALSE become bool;
// None becomes null; [..] and {..} are parsed as YAML flow collections
// (quote them in host lines when they hold spaces); everything else, floats
// and versions such as 1.30 included, is a string. A value written in
// quotes is always a string (apart from a quoted [..] or {..}): "8080" is
// the string 8080. YAML files keep YAML's own types.
//
// YAML inventories use Ansible's shape, and an unknown key is an error
// (Ansible only warns):
//
//	all:
//	  vars: {ansible_user: ubuntu}
//	  hosts: {standalone: }
//	  children:
//	    kube_control_plane:
//	      hosts:
//	        cp-[1:3]: {ansible_become: true}
//
// Every host is in "all"; a host in no other group is in "ungrouped".
//
// # Vars files
//
// group_vars/ and host_vars/ beside the inventory are read at Load, and
// AddVarsDir reads those beside the playbook. For a group or host NAME the
// first existing of NAME (a file, or a folder whose files are read
// recursively in lexical order, later files winning), NAME.yml, NAME.yaml,
// NAME.json is used, as in Ansible; others are ignored with a warning, as
// are vars files naming no group or host (see Warnings). Ansible Vault
// files and `!vault` values are decrypted with LoadOptions.Vault (an error
// naming the file and line without it).
//
// # Precedence
//
// Host.Vars merges, lowest first: the groups of the host ordered by depth
// ("all" is 0, a child is one deeper than its deepest parent), then
// ansible_group_priority (default 1), then name; then the host itself. Inside
// each of those levels the inventory file loses to the vars files beside the
// inventory, which lose to the vars files beside the playbook. So a host's
// inline var beats any group var wherever that is written. (Ansible orders
// slightly differently: all group vars from the inventory file lose to all
// group_vars files. gokube's order is per group, which is what the variable
// precedence in the README states.) Keys replace whole values (Ansible's
// default hash_behaviour=replace); values are deep copies, so no two hosts
// share a map or slice and Host returns a copy the caller may change.
//
// # Patterns
//
// Match takes what Ansible's hosts: and --limit take: all or *, a group, a
// host, wildcards (node-*, web-[!1]), ~regex (matched from the start of the
// name), a:b or a,b (union), a:&b (intersection), a:!b (exclusion), group[0]
// / group[1:3] / group[-1] (positions), @file (one pattern per line).
// Plain terms apply first, then &, then !. The result is in inventory order
// (order of first appearance in the file), without duplicates. A term that
// matches nothing is ignored as in Ansible (MatchDetail lists such terms so
// the caller can warn), but when the whole pattern selects no host and one
// of its terms named nothing, Match returns an error: a mistyped --limit
// fails instead of silently doing nothing, while an existing empty group
// simply selects no host. As a gokube extension, node-[1:3] names hosts by
// range when "node-" itself matches nothing (Ansible would read it as
// positions). localhost, 127.0.0.1 and ::1 match Ansible's implicit
// localhost when the inventory does not define them; Host returns it with
// the "all" vars and ansible_connection=local, in no group.
//
// Renamed groups: kubespray renamed kube-master, kube-node and k8s-cluster
// to kube_control_plane, kube_node and k8s_cluster. In Match and GroupHosts
// a name the inventory does not define means its partner when the
// inventory defines that (GroupAlias, ResolveGroup), so playbooks written
// with either naming run on inventories written with the other. group_vars
// files still match by exact name.
//
// # Connection variables
//
// Host.ConnVars parses ansible_host/ansible_ssh_host, ansible_port,
// ansible_user, ansible_ssh_private_key_file, ansible_password,
// ansible_become, ansible_become_user, ansible_become_password,
// ansible_connection (ssh, local; smart and paramiko mean ssh),
// ansible_ssh_common_args/ansible_ssh_extra_args (-J, -o ProxyJump=,
// -o ProxyCommand="ssh -W %h:%p bastion" give the bastion) and
// ansible_ssh_known_hosts_file. gokube_host, gokube_port and gokube_user
// alias the first three and win over them. Load checks every literal value
// (templated values are checked by the engine after rendering) and reports
// a bad one at its file and line.
//
// A literal password (ansible_password, ansible_ssh_pass,
// ansible_become_password, ansible_become_pass) in an inventory or vars file
// is refused with its file and line, unless LoadOptions.AllowPasswords is
// set or the host's vars set gokube_allow_inventory_passwords=true. A value
// that is a template ({{ ... }}) is not a literal and is accepted.
//
// # Output
//
// ListJSON prints the JSON of `ansible-inventory --list` (groups with
// sorted direct hosts and children, empty groups left out except in their
// parent's children, _meta.hostvars with merged vars); Graph prints
// `ansible-inventory --graph`. Both are sorted like Ansible's and end
// without a newline.
package inventory
