package engine

// The top-level variables a template reads, found by walking its parse
// trees: which must exist and which may be undefined (a soft path).

import (
	"text/template/parse"
)

// refs lists the top-level variables a template reads.
type refs struct {
	hard    map[string]bool // must exist
	soft    map[string]bool // may be missing (default/coalesce/...)
	inner   map[string]bool // found under range/with: may refer to dot, errors ignored
	hostvar map[string][]string
	allHV   bool
}

func scanRefs(trees map[string]*parse.Tree) *refs {
	r := &refs{hard: map[string]bool{}, soft: map[string]bool{}, inner: map[string]bool{}, hostvar: map[string][]string{}}
	for _, t := range trees {
		r.walk(t.Root, false)
	}
	return r
}

func (r *refs) add(ident []string, soft, inDot bool) {
	if len(ident) == 0 {
		return
	}
	name := ident[0]
	if name == "hostvars" {
		if len(ident) >= 3 {
			r.hostvar[ident[1]] = append(r.hostvar[ident[1]], ident[2])
		} else {
			r.allHV = true
		}
		return
	}
	switch {
	case inDot:
		r.inner[name] = true
	case soft:
		r.soft[name] = true
	default:
		r.hard[name] = true
	}
}

func (r *refs) walk(n parse.Node, inDot bool) {
	switch x := n.(type) {
	case nil:
	case *parse.ListNode:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			r.walk(c, inDot)
		}
	case *parse.ActionNode:
		r.pipe(x.Pipe, inDot)
	case *parse.IfNode:
		r.pipe(x.Pipe, inDot)
		r.walk(x.List, inDot)
		r.walk(x.ElseList, inDot)
	case *parse.RangeNode:
		r.pipe(x.Pipe, inDot)
		r.walk(x.List, true)
		r.walk(x.ElseList, inDot)
	case *parse.WithNode:
		r.pipe(x.Pipe, inDot)
		r.walk(x.List, true)
		r.walk(x.ElseList, inDot)
	case *parse.TemplateNode:
		r.pipe(x.Pipe, inDot)
	}
}

func (r *refs) pipe(p *parse.PipeNode, inDot bool) {
	if p == nil {
		return
	}
	for i, c := range p.Cmds {
		if r.path(c, inDot) {
			continue
		}
		soft := false
		if len(c.Args) > 0 {
			if id, ok := c.Args[0].(*parse.IdentifierNode); ok && softFuncs[id.Ident] {
				soft = true
			}
		}
		// `.x | default "y"`: the piped value is soft too.
		nextSoft := false
		if i+1 < len(p.Cmds) && len(p.Cmds[i+1].Args) > 0 {
			if id, ok := p.Cmds[i+1].Args[0].(*parse.IdentifierNode); ok && softFuncs[id.Ident] {
				nextSoft = true
			}
		}
		for j, a := range c.Args {
			isSoft := soft && j > 0 || nextSoft && len(c.Args) == 1
			r.arg(a, isSoft, inDot)
		}
	}
}

// path records the variable a soft path (__gkpath, see rewriteTree) reads.
func (r *refs) path(c *parse.CommandNode, inDot bool) bool {
	if identOf(c) != fnPath || len(c.Args) < 2 {
		return false
	}
	var keys []string
	for _, a := range c.Args[2:] {
		if s, ok := a.(*parse.StringNode); ok {
			keys = append(keys, s.Text)
		}
	}
	switch x := c.Args[1].(type) {
	case *parse.DotNode:
		r.add(keys, true, inDot)
	case *parse.VariableNode:
		if len(x.Ident) == 1 && x.Ident[0] == "$" {
			r.add(keys, true, false)
		}
	default:
		r.arg(x, true, inDot)
	}
	return true
}

func (r *refs) arg(a parse.Node, soft, inDot bool) {
	switch x := a.(type) {
	case *parse.FieldNode:
		r.add(x.Ident, soft, inDot)
	case *parse.VariableNode:
		if len(x.Ident) > 1 && x.Ident[0] == "$" {
			r.add(x.Ident[1:], soft, false)
		}
	case *parse.ChainNode:
		if _, ok := x.Node.(*parse.DotNode); ok && len(x.Field) > 0 {
			r.add(x.Field, soft, inDot)
		}
		r.arg(x.Node, soft, inDot)
	case *parse.PipeNode:
		r.pipe(x, inDot)
	}
}
