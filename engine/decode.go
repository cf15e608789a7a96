package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"gokube/internal/vault"
	"gokube/internal/yamlcheck"
)

func parseYAML(s src) (*yaml.Node, error) {
	b, err := s.read()
	if err != nil {
		return nil, &LoadError{Pos: Pos{File: s.where()}, Msg: err.Error(), Err: err}
	}
	if vault.IsEncrypted(b) {
		if b, err = s.vault.Decrypt(b); err != nil {
			return nil, &LoadError{Pos: Pos{s.where(), 1}, Msg: err.Error(), Err: err}
		}
	}
	root, err := parseYAMLBytes(b, s.where())
	if err != nil {
		return nil, err
	}
	if err := s.vault.DecryptTree(root); err != nil {
		line := 0
		if ne := (*vault.NodeError)(nil); errors.As(err, &ne) {
			line, err = ne.Line, ne.Err
		}
		return nil, &LoadError{Pos: Pos{s.where(), line}, Msg: "!vault value: " + err.Error(), Err: err}
	}
	return root, nil
}

func parseYAMLBytes(b []byte, name string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		msg := err.Error()
		line := 0
		// yaml.v3 says "yaml: line N: ..."; lift the line into our form.
		if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
			if i := strings.Index(rest, ":"); i > 0 {
				if n, err := strconv.Atoi(rest[:i]); err == nil {
					line, msg = n, strings.TrimSpace(rest[i+1:])
				}
			}
		}
		return nil, &LoadError{Pos: Pos{name, line}, Msg: msg, Err: err}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.SequenceNode, Line: 1}, nil
	}
	if e := yamlcheck.Check(&doc); e != nil {
		return nil, &LoadError{Pos: Pos{name, e.Line}, Msg: e.Msg, Err: e}
	}
	return doc.Content[0], nil
}

func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func mergeMaps(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func decodeAny(n *yaml.Node) (any, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return normalize(v), nil
}

// normalize turns yaml's map[string]interface{} trees into plain types and
// map keys into strings so templates index them uniformly.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

func decodeMap(n *yaml.Node, p Pos, what string) (map[string]any, error) {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "") {
		return map[string]any{}, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errAt(p, "%s must be a mapping", what)
	}
	v, err := decodeAny(n)
	if err != nil {
		return nil, errAt(p, "%s: %w", what, err)
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	if err := checkNodeTemplates(n, p.File); err != nil {
		return nil, err
	}
	return m, nil
}

// checkNodeTemplates parses every template in n's scalars (variables,
// environment, args), so a syntax error or a function that is not there
// is refused at load with the value's line and key, not when a host first
// renders it (or never, for a variable no task on the run's hosts reads).
func checkNodeTemplates(n *yaml.Node, file string) error {
	syn := newTemplateSyntax()
	var errs errList
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "{{") {
				return
			}
			if err := syn.check(n.Value); err != nil {
				err = tmplError(Pos{file, n.Line}, "", err)
				var te *TemplateError
				if !errors.As(err, &te) {
					errs.add(errAt(Pos{file, n.Line}, "%s: %w", key, err))
					return
				}
				msg := strings.TrimPrefix(te.Error(), te.Pos.String()+": ")
				if key != "" {
					msg = key + ": " + msg
				}
				errs.add(&LoadError{Pos: te.Pos, Msg: msg, Err: te})
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], n.Content[i].Value)
			}
		case yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		}
	}
	walk(n, "")
	return errs.err()
}

func boolNode(n *yaml.Node, p Pos, key string) (bool, error) {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
	}
	return false, errAt(p, "%s: want a boolean, got %q", key, n.Value)
}

func strList(n *yaml.Node, p Pos, key string) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		var out []string
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, errAt(Pos{p.File, c.Line}, "%s: want a list of strings", key)
			}
			out = append(out, c.Value)
		}
		return out, nil
	}
	return nil, errAt(p, "%s: want a string or a list of strings", key)
}

func condList(n *yaml.Node, file string, key string) ([]Cond, error) {
	p := Pos{file, n.Line}
	switch n.Kind {
	case yaml.ScalarNode:
		return []Cond{{Expr: n.Value, Pos: p}}, nil
	case yaml.SequenceNode:
		var out []Cond
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, errAt(Pos{file, c.Line}, "%s: want a condition string", key)
			}
			out = append(out, Cond{Expr: c.Value, Pos: Pos{file, c.Line}})
		}
		return out, nil
	}
	return nil, errAt(p, "%s: want a condition or a list of conditions", key)
}

func loadVarsFile(s src, p Pos) (map[string]any, error) {
	root, err := parseYAML(s)
	if err != nil {
		return nil, err
	}
	if root.Kind == yaml.SequenceNode && len(root.Content) == 0 {
		return map[string]any{}, nil
	}
	return decodeMap(root, Pos{s.where(), root.Line}, "vars file")
}

func flatten1(l []any) []any {
	var out []any
	for _, x := range l {
		if sub, ok := x.([]any); ok {
			out = append(out, sub...)
		} else {
			out = append(out, x)
		}
	}
	return out
}
