// Package yamlcheck finds YAML mistakes that parse without error but mean
// something other than what was written: a key given twice in one mapping
// (the parser keeps both, and whichever a reader takes wins silently) and
// an unquoted template (`x: {{ .y }}` is a mapping whose key is a mapping,
// as PyYAML also refuses). Playbooks, roles and vars files are checked for
// both; inventory vars files for templates (a duplicate there is a warning
// naming both lines, as in Ansible).
package yamlcheck

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Error is one mistake, at the line of the node that shows it.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// isTemplateMap tells whether n is what `{{ .y }}` parses to: a flow
// mapping whose key is a flow mapping.
func isTemplateMap(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode && len(n.Content) >= 2 && n.Content[0].Kind == yaml.MappingNode
}

// Check walks the tree under n and returns its first mistake, or nil.
func Check(n *yaml.Node) *Error { return walk(n, true) }

// CheckTemplates is Check for unquoted templates only, for readers that
// report duplicate keys their own way (inventory vars files warn, as
// Ansible does, naming both lines).
func CheckTemplates(n *yaml.Node) *Error { return walk(n, false) }

func walk(n *yaml.Node, dups bool) *Error {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if e := walk(c, dups); e != nil {
				return e
			}
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.MappingNode {
				return &Error{Line: k.Line, Msg: "an unquoted template: {{ ... }} starts a YAML mapping here; quote the value (x: \"{{ .y }}\")"}
			}
			if dups && k.Kind == yaml.ScalarNode && k.Value != "<<" {
				if first, dup := seen[k.Value]; dup {
					return &Error{Line: k.Line, Msg: fmt.Sprintf("key %q given twice in one mapping (first at line %d)", k.Value, first)}
				}
				seen[k.Value] = k.Line
			}
			if isTemplateMap(v) && k.Kind == yaml.ScalarNode {
				return &Error{Line: v.Line, Msg: fmt.Sprintf("%s: an unquoted template is a YAML mapping; quote it: %s: \"{{ ... }}\"", k.Value, k.Value)}
			}
			if e := walk(v, dups); e != nil {
				return e
			}
		}
	}
	return nil
}
