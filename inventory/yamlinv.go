package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"gokube/internal/vault"
	"gokube/internal/yamlcheck"
)

var yamlErrLine = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// yamlError places a yaml.v3 error at its file and line.
func yamlError(file string, err error) error {
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: m[2]}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
}

func parseYAMLDoc(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	if e := yamlcheck.CheckTemplates(&doc); e != nil {
		return nil, &Error{File: file, Line: e.Line, Msg: e.Msg}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	return root, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// parseYAML reads Ansible's YAML inventory: top-level keys are groups
// (usually just "all"); a group has hosts, vars and children, and nothing
// else (an unknown key is an error, where Ansible only warns).
func (inv *Inventory) parseYAML(file string, data []byte) error {
	root, err := parseYAMLDoc(file, data)
	if err != nil || root == nil {
		return err
	}
	if err := inv.decryptValues(file, root); err != nil {
		return err
	}
	if root.Kind != yaml.MappingNode {
		return errAt(file, root.Line, "a YAML inventory is a mapping of group names (all: {hosts: ..., children: ..., vars: ...})")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if err := inv.yamlGroup(file, k, v, 0); err != nil {
			return err
		}
	}
	return nil
}

func (inv *Inventory) yamlGroup(file string, key, n *yaml.Node, depth int) error {
	name := key.Value
	if key.Kind != yaml.ScalarNode || name == "" || strings.ContainsAny(name, " \t:[]") {
		return errAt(file, key.Line, "invalid group name %q", name)
	}
	if depth > 100 {
		return errAt(file, key.Line, "groups nested too deep")
	}
	inv.addGroup(name)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return errAt(file, n.Line, "group %q: want a mapping with hosts, children and/or vars", name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "hosts":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return errAt(file, v.Line, "group %q: hosts must be a mapping of host names (a list is not accepted, as in Ansible)", name)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				hk, hv := v.Content[j], v.Content[j+1]
				names, port, err := parseHostPattern(hk.Value)
				if err != nil {
					return errAt(file, hk.Line, "%v", err)
				}
				if !isNull(hv) && hv.Kind != yaml.MappingNode {
					return errAt(file, hv.Line, "host %q: vars must be a mapping", hk.Value)
				}
				for _, hn := range names {
					h := inv.addHost(hn, name)
					if port > 0 {
						h.vars[layerInventory].set("ansible_port", port, fmt.Sprintf("%s:%d", file, hk.Line))
					}
					if err := inv.setMapping(file, hv, &h.vars[layerInventory]); err != nil {
						return err
					}
				}
			}
		case "vars":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return errAt(file, v.Line, "group %q: vars must be a mapping", name)
			}
			if err := inv.setMapping(file, v, &inv.groups[name].vars[layerInventory]); err != nil {
				return err
			}
		case "children":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return errAt(file, v.Line, "group %q: children must be a mapping of group names", name)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				ck, cv := v.Content[j], v.Content[j+1]
				if err := inv.addChild(name, ck.Value, file, ck.Line); err != nil {
					return err
				}
				if err := inv.yamlGroup(file, ck, cv, depth+1); err != nil {
					return err
				}
			}
		default:
			return errAt(file, k.Line, "group %q: unknown key %q (want hosts, children or vars)", name, k.Value)
		}
	}
	return nil
}

// setMapping stores each key of a YAML mapping with its file:line.
func (inv *Inventory) setMapping(file string, n *yaml.Node, vs *varSet) error {
	if n == nil || isNull(n) {
		return nil
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			inv.warnings = append(inv.warnings, fmt.Sprintf("%s:%d: duplicate key %q (first at line %d); the last one is used", file, k.Line, k.Value, first))
		}
		seen[k.Value] = k.Line
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag != "!!str" {
			m := map[string]any{}
			if err := mergeInto(m, v, 0); err != nil {
				return errAt(file, k.Line, "%v", err)
			}
			for mk, mv := range m {
				if _, ok := vs.vals[mk]; !ok {
					vs.set(mk, mv, fmt.Sprintf("%s:%d", file, k.Line))
				}
			}
			continue
		}
		val, err := nodeValue(v, 0)
		if err != nil {
			return errAt(file, v.Line, "%s: %v", keyString(k), err)
		}
		vs.set(keyString(k), val, fmt.Sprintf("%s:%d", file, k.Line))
	}
	return nil
}

var varsExts = []string{"", ".yml", ".yaml", ".json"}

// loadVarsDir reads dir/group_vars and dir/host_vars like Ansible's
// host_group_vars plugin: for an entity NAME the first existing of NAME
// (file or folder), NAME.yml, NAME.yaml, NAME.json is used; a folder
// contributes its files (recursively, lexical order, hidden and backup files
// skipped), later files winning.
func (inv *Inventory) loadVarsDir(dir string, layer int) error {
	for _, kind := range []string{"group_vars", "host_vars"} {
		base := filepath.Join(dir, kind)
		entries, err := os.ReadDir(base)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		present := map[string]bool{}
		for _, e := range entries {
			present[e.Name()] = true
		}
		used := map[string]bool{}
		var entities []string
		if kind == "group_vars" {
			entities = inv.groupOrder
		} else {
			entities = inv.hostOrder
		}
		for _, ent := range entities {
			var chosen string
			for _, ext := range varsExts {
				cand := ent + ext
				if !present[cand] {
					continue
				}
				if chosen == "" {
					chosen = cand
				} else {
					inv.warnings = append(inv.warnings, fmt.Sprintf("%s ignored: %s is used for %s", filepath.Join(base, cand), filepath.Join(base, chosen), ent))
				}
				used[cand] = true
			}
			if chosen == "" {
				continue
			}
			files, err := varsFiles(filepath.Join(base, chosen))
			if err != nil {
				return err
			}
			var vs *varSet
			if kind == "group_vars" {
				vs = &inv.groups[ent].vars[layer]
			} else {
				vs = &inv.hosts[ent].vars[layer]
			}
			for _, f := range files {
				if err := inv.loadVarsFile(f, vs); err != nil {
					return err
				}
			}
		}
		for _, e := range entries {
			n := e.Name()
			if used[n] || strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
				continue
			}
			what := "group"
			if kind == "host_vars" {
				what = "host"
			}
			msg := fmt.Sprintf("%s: no %s of that name in the inventory; ignored", filepath.Join(base, n), what)
			if kind == "group_vars" {
				if g := inv.sameGroupName(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, ".yml"), ".yaml"), ".json")); g != "" {
					msg += fmt.Sprintf(" (did you mean %s? - and _ differ)", g)
				}
			}
			inv.warnings = append(inv.warnings, msg)
		}
	}
	return nil
}

func varsFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		full := filepath.Join(path, n)
		ext := filepath.Ext(n)
		st, err := os.Stat(full)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		if st.IsDir() {
			if ext != "" {
				continue
			}
			sub, err := varsFiles(full)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		switch ext {
		case "", ".yml", ".yaml", ".json":
			out = append(out, full)
		}
	}
	return out, nil
}

func (inv *Inventory) loadVarsFile(path string, vs *varSet) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	if vault.IsEncrypted(data) {
		if data, err = inv.opts.Vault.Decrypt(data); err != nil {
			return errAt(path, 1, "%v", err)
		}
	}
	root, err := parseYAMLDoc(path, data)
	if err != nil || root == nil {
		return err
	}
	if err := inv.decryptValues(path, root); err != nil {
		return err
	}
	if root.Kind != yaml.MappingNode {
		return errAt(path, root.Line, "a vars file must be a mapping of variable names to values")
	}
	return inv.setMapping(path, root, vs)
}

// sameGroupName is the group whose name differs from n only in - versus _
// (k8s_cluster.yml beside a [k8s-cluster] group), or "".
func (inv *Inventory) sameGroupName(n string) string {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	for g := range inv.groups {
		if g != n && norm(g) == norm(n) {
			return g
		}
	}
	return ""
}

// decryptValues replaces `!vault` values under root by their plaintext.
func (inv *Inventory) decryptValues(file string, root *yaml.Node) error {
	err := inv.opts.Vault.DecryptTree(root)
	if ne := (*vault.NodeError)(nil); errors.As(err, &ne) {
		return errAt(file, ne.Line, "!vault value: %v", ne.Err)
	}
	return err
}
