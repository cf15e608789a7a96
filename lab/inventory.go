package lab

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// InventoryOptions shapes the INI inventory of a lab.
type InventoryOptions struct {
	Lab        string
	User       string // ansible_user (default deploy); root means no become
	KeyPath    string
	KnownHosts string
	// Groups maps group name to host indexes, in the order groups appear.
	Groups []Group
}

// Group is one inventory group of lab hosts (by index).
type Group struct {
	Name    string
	Indexes []int
}

var groupNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// ParseGroups reads a --groups value: "etcd=1-3,kube-master=1-2,lb=4,6".
// A bare number or range after a group adds to that group; "N-" runs to
// the last of nhosts hosts.
func ParseGroups(spec string, nhosts int) ([]Group, error) {
	var out []Group
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	seen := map[string]int{}
	for _, tok := range strings.Split(spec, ",") {
		tok = strings.TrimSpace(tok)
		rng := tok
		if name, r, ok := strings.Cut(tok, "="); ok {
			if !groupNameRE.MatchString(name) {
				return nil, fmt.Errorf("--groups %q: bad group name %q", spec, name)
			}
			if name == "all" || name == "ungrouped" {
				return nil, fmt.Errorf("--groups %q: %q is implicit", spec, name)
			}
			if _, dup := seen[name]; dup {
				return nil, fmt.Errorf("--groups %q: group %q given twice", spec, name)
			}
			seen[name] = len(out)
			out = append(out, Group{Name: name})
			rng = r
		} else if len(out) == 0 {
			return nil, fmt.Errorf("--groups %q: %q comes before any group=...", spec, tok)
		}
		lo, hi, err := parseRange(rng, nhosts)
		if err != nil {
			return nil, fmt.Errorf("--groups %q: %w", spec, err)
		}
		g := &out[len(out)-1]
		for i := lo; i <= hi; i++ {
			dup := false
			for _, x := range g.Indexes {
				dup = dup || x == i
			}
			if !dup {
				g.Indexes = append(g.Indexes, i)
			}
		}
	}
	return out, nil
}

func parseRange(s string, nhosts int) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, fmt.Errorf("bad host number %q", s)
	}
	hi := lo
	if isRange {
		if strings.TrimSpace(b) == "" {
			hi = nhosts
		} else if hi, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("bad host range %q", s)
		}
	}
	if lo < 1 || hi < lo {
		return 0, 0, fmt.Errorf("bad host range %q", s)
	}
	if hi > nhosts {
		return 0, 0, fmt.Errorf("host %d in %q: the lab has %d hosts", hi, s, nhosts)
	}
	return lo, hi, nil
}

// RenderInventory writes an INI inventory usable by gokube and Ansible.
// Every host line carries its connection settings, so the file works on
// its own wherever it is copied. `ip` is the host's own address even while
// SSH goes through the delay forwarder (ansible_host/ansible_port then
// point at the forwarder): roles should use `ip` for cluster addresses.
func RenderInventory(hosts []Host, o InventoryOptions) (string, error) {
	if o.User == "" {
		o.User = "deploy"
	}
	if strings.ContainsAny(o.KeyPath+o.KnownHosts, " '\"\t\n") {
		return "", fmt.Errorf("inventory: lab paths must not contain spaces or quotes: %q, %q", o.KeyPath, o.KnownHosts)
	}
	byIndex := map[int]Host{}
	var b strings.Builder
	fmt.Fprintf(&b, "# gokube lab %s: written by gokube lab; host keys are in %s\n[all]\n", o.Lab, o.KnownHosts)
	for _, h := range hosts {
		byIndex[h.Index] = h
		fmt.Fprintf(&b, "%s ansible_host=%s", h.Name, h.SSHAddr)
		if h.SSHPort != 0 && h.SSHPort != 22 {
			fmt.Fprintf(&b, " ansible_port=%d", h.SSHPort)
		}
		fmt.Fprintf(&b, " ip=%s ansible_user=%s ansible_ssh_private_key_file=%s ansible_ssh_known_hosts_file=%s", h.Addr, o.User, o.KeyPath, o.KnownHosts)
		fmt.Fprintf(&b, " ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'", o.KnownHosts)
		if o.User != "root" {
			b.WriteString(" ansible_become=true")
		}
		b.WriteString(" ansible_python_interpreter=/usr/bin/python3\n")
	}
	for _, g := range o.Groups {
		fmt.Fprintf(&b, "\n[%s]\n", g.Name)
		for _, i := range g.Indexes {
			h, ok := byIndex[i]
			if !ok {
				return "", fmt.Errorf("inventory: group %s: the lab has no host %d", g.Name, i)
			}
			b.WriteString(h.Name + "\n")
		}
	}
	return b.String(), nil
}
