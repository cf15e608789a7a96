package engine

import (
	"strconv"
	"text/template/parse"
)

// rewriteTree adjusts a parsed template so Go's text/template behaves the
// way an Ansible user expects, without changing the syntax they write:
//
//   - In a soft position (an argument of default, coalesce, empty, get, or
//     a value piped into one of them) a path such as .item.shell or
//     $.hostvars.h.x reads missing map keys as nil instead of failing, so
//     `.item.shell | default "/bin/bash"` works for an item without the key;
//     `hostvar H "x"` there yields nil for a host without the variable.
//   - `{{ if }}` and the operands of and/or in a condition use the same
//     truthiness as when: ("false", "no", "0" are false), through __gktruth.
//
// Elsewhere a missing key still fails with the expression in the message.
func rewriteTree(t *parse.Tree) {
	if t.Root != nil {
		rwList(t.Root)
	}
}

const (
	fnPath     = "__gkpath"     // __gkpath X "k1" "k2": X.k1.k2, nil when a key is missing
	fnTruth    = "__gktruth"    // Ansible truthiness of its argument
	fnSoftHVar = "__gkhostvar0" // hostvar that yields nil for an undefined variable
)

func rwList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch x := n.(type) {
		case *parse.ActionNode:
			rwPipe(x.Pipe)
		case *parse.IfNode:
			rwPipe(x.Pipe)
			truthPipe(x.Pipe)
			rwList(x.List)
			rwList(x.ElseList)
		case *parse.RangeNode:
			rwPipe(x.Pipe)
			rwList(x.List)
			rwList(x.ElseList)
		case *parse.WithNode:
			rwPipe(x.Pipe)
			rwList(x.List)
			rwList(x.ElseList)
		case *parse.TemplateNode:
			rwPipe(x.Pipe)
		}
	}
}

func identOf(c *parse.CommandNode) string {
	if c == nil || len(c.Args) == 0 {
		return ""
	}
	if id, ok := c.Args[0].(*parse.IdentifierNode); ok {
		return id.Ident
	}
	return ""
}

// rwPipe makes soft positions tolerate missing keys and recurses into
// nested pipelines; a pipeline ending in __gktruth gets truth-tested
// operands for and/or.
func rwPipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for i, c := range p.Cmds {
		soft := softFuncs[identOf(c)]
		nextSoft := i+1 < len(p.Cmds) && softFuncs[identOf(p.Cmds[i+1])]
		for j, a := range c.Args {
			if soft && j > 0 || nextSoft && j == 0 {
				c.Args[j] = softArg(a, nextSoft && j == 0 && len(c.Args) > 1)
			}
			if pp, ok := c.Args[j].(*parse.PipeNode); ok {
				rwPipe(pp)
			}
			if ch, ok := c.Args[j].(*parse.ChainNode); ok {
				if pp, ok := ch.Node.(*parse.PipeNode); ok {
					rwPipe(pp)
				}
			}
		}
	}
	if n := len(p.Cmds); n >= 2 && identOf(p.Cmds[n-1]) == fnTruth {
		truthOperands(p.Cmds[n-2])
	}
}

// softArg rewrites one argument in a soft position. head is true when a is
// the function of a command with arguments (`hostvar $h "x" | default 1`):
// only a hostvar call is softened there.
func softArg(a parse.Node, head bool) parse.Node {
	switch x := a.(type) {
	case *parse.IdentifierNode:
		if x.Ident == "hostvar" {
			return &parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: x.Pos, Ident: fnSoftHVar}
		}
	case *parse.FieldNode:
		if head {
			return a
		}
		return pathCall(x.Pos, &parse.DotNode{NodeType: parse.NodeDot, Pos: x.Pos}, x.Ident)
	case *parse.VariableNode:
		if len(x.Ident) > 1 && !head {
			v := &parse.VariableNode{NodeType: parse.NodeVariable, Pos: x.Pos, Ident: x.Ident[:1]}
			return pathCall(x.Pos, v, x.Ident[1:])
		}
	case *parse.ChainNode:
		if !head {
			return pathCall(x.Pos, x.Node, x.Field)
		}
	case *parse.PipeNode:
		// (expr) as an argument of default: its last stage is soft too.
		if len(x.Decl) == 0 && len(x.Cmds) > 0 {
			last := x.Cmds[len(x.Cmds)-1]
			if len(last.Args) > 0 {
				last.Args[0] = softArg(last.Args[0], len(last.Args) > 1)
			}
		}
	}
	return a
}

func pathCall(pos parse.Pos, base parse.Node, keys []string) *parse.PipeNode {
	args := []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: pos, Ident: fnPath}, base}
	for _, k := range keys {
		args = append(args, &parse.StringNode{NodeType: parse.NodeString, Pos: pos, Quoted: strconv.Quote(k), Text: k})
	}
	return &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos,
		Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: pos, Args: args}}}
}

// truthPipe makes an if's pipeline end in __gktruth (not when it declares
// a variable: `{{ if $x := .y }}` keeps $x's value).
func truthPipe(p *parse.PipeNode) {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) == 0 {
		return
	}
	last := p.Cmds[len(p.Cmds)-1]
	if identOf(last) == fnTruth {
		return
	}
	truthOperands(last)
	p.Cmds = append(p.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: last.Pos,
		Args: []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: last.Pos, Ident: fnTruth}}})
}

// truthOperands wraps each operand of an and/or command in a truth test,
// so `and .a .b` in a condition short-circuits on Ansible's truthiness.
func truthOperands(c *parse.CommandNode) {
	if id := identOf(c); id != "and" && id != "or" {
		return
	}
	for j := 1; j < len(c.Args); j++ {
		a := c.Args[j]
		pos := a.Position()
		var p *parse.PipeNode
		if pp, ok := a.(*parse.PipeNode); ok && len(pp.Decl) == 0 {
			p = pp
		} else {
			p = &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos,
				Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{a}}}}
		}
		truthPipe(p)
		c.Args[j] = p
	}
}
