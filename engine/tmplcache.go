package engine

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
)

// tmplCache parses each distinct template text once per run and executes it
// in a template set borrowed for that one execution. A set (tmplInst) is a
// text/template namespace holding the run's functions, with the host
// helpers bound to the scope it executes for (hostFuncs); a text joins a
// set as one more associated template the first time the set runs it.
// text/template checks a function table by reflection when it is given one
// (Funcs: ~200 functions), which cost more than most parses when every
// text and host paid it; now each set pays it once. There are only as many
// sets as executions at once: one per host, and one more for each render
// nested in another (a variable that refers to another).
type tmplCache struct {
	mu    sync.Mutex
	m     map[string]*tmplEntry
	n     int              // entries named so far
	funcs template.FuncMap // the run's functions, host helpers included
	free  []*tmplInst
}

type tmplEntry struct {
	text string
	// name is the text's template in every set; the templates it defines
	// itself ({{ define }}, {{ block }}) are named below it (defineName),
	// so two texts that define one name do not meet in a set.
	name   string
	trees  map[string]*parse.Tree // by name in the set
	err    error
	refs   *refs
	single string // the pipeline when the text is one {{ action }}
	isOne  bool
}

// tmplInst is one template set; cur and got belong to the execution that
// borrowed it.
type tmplInst struct {
	set *template.Template
	in  map[*tmplEntry]*template.Template
	cur *scope
	got any
}

func newTmplCache(funcs template.FuncMap) *tmplCache {
	fm := make(template.FuncMap, len(funcs)+16)
	maps.Copy(fm, funcs)
	// The host helpers' names, so texts parse; each set binds its own.
	maps.Copy(fm, hostFuncs(&tmplInst{}))
	return &tmplCache{m: map[string]*tmplEntry{}, funcs: fm}
}

func (c *tmplCache) entry(text string) *tmplEntry {
	c.mu.Lock()
	e, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return e
	}
	e = &tmplEntry{text: text}
	c.mu.Lock()
	e.name = fmt.Sprintf("t%d", c.n)
	c.n++
	c.mu.Unlock()
	if trees, err := parseTrees(text, c.funcs); err != nil {
		e.err = err
	} else {
		e.trees = setNames(trees, e.name)
		main := e.trees[e.name]
		e.refs = scanRefs(trees)
		e.single, e.isOne = singleExpr(main)
	}
	c.mu.Lock()
	if prev, ok := c.m[text]; ok {
		e = prev
	} else {
		c.m[text] = e
	}
	c.mu.Unlock()
	return e
}

// parseTrees parses text, rewritten for Ansible's semantics (rewriteTree),
// without a template around it. Every tree keeps the parse name "t", which
// error positions go by (tmplErrRe).
func parseTrees(text string, names map[string]any) (map[string]*parse.Tree, error) {
	if err := checkJinja(text); err != nil {
		return nil, err
	}
	trees, err := parse.Parse("t", text, "", "", names, builtinNames)
	if err != nil {
		return nil, explainParseError(err)
	}
	for _, t := range trees {
		rewriteTree(t)
	}
	return trees, nil
}

// setNames renames a text's trees for a set: its own template "t" becomes
// name, one it defines becomes defineName(name, n), and every
// {{ template }} call to a template the text defines follows.
func setNames(trees map[string]*parse.Tree, name string) map[string]*parse.Tree {
	out := make(map[string]*parse.Tree, len(trees))
	for n, t := range trees {
		if n == "t" {
			out[name] = t
			continue
		}
		out[defineName(name, n)] = t
	}
	if len(trees) > 1 {
		for _, t := range trees {
			renameCalls(t.Root, trees, name)
		}
	}
	return out
}

func defineName(text, define string) string { return text + "/" + define }

func renameCalls(l *parse.ListNode, trees map[string]*parse.Tree, name string) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch x := n.(type) {
		case *parse.TemplateNode:
			if _, ok := trees[x.Name]; ok {
				if x.Name == "t" {
					x.Name = name
				} else {
					x.Name = defineName(name, x.Name)
				}
			}
		case *parse.IfNode:
			renameCalls(x.List, trees, name)
			renameCalls(x.ElseList, trees, name)
		case *parse.RangeNode:
			renameCalls(x.List, trees, name)
			renameCalls(x.ElseList, trees, name)
		case *parse.WithNode:
			renameCalls(x.List, trees, name)
			renameCalls(x.ElseList, trees, name)
		}
	}
}

// borrow takes a free set or makes one.
func (c *tmplCache) borrow() *tmplInst {
	c.mu.Lock()
	if n := len(c.free); n > 0 {
		inst := c.free[n-1]
		c.free = c.free[:n-1]
		c.mu.Unlock()
		return inst
	}
	c.mu.Unlock()
	inst := &tmplInst{in: map[*tmplEntry]*template.Template{}}
	fm := maps.Clone(c.funcs)
	maps.Copy(fm, hostFuncs(inst))
	inst.set = template.New("").Option("missingkey=error").Funcs(fm)
	return inst
}

// template is e's template in the set, added on first use.
func (inst *tmplInst) template(e *tmplEntry) (*template.Template, error) {
	if t, ok := inst.in[e]; ok {
		return t, nil
	}
	var main *template.Template
	for n, tree := range e.trees {
		t, err := inst.set.AddParseTree(n, tree)
		if err != nil {
			return nil, err
		}
		if n == e.name {
			main = t
		}
	}
	inst.in[e] = main
	return main, nil
}

// exec runs the template for scope s with data d; it returns the output
// and the value captured by __gkcapture.
func (c *tmplCache) exec(e *tmplEntry, s *scope, d map[string]any) (string, any, error) {
	inst := c.borrow()
	defer func() {
		inst.cur, inst.got = nil, nil
		c.mu.Lock()
		c.free = append(c.free, inst)
		c.mu.Unlock()
	}()
	t, err := inst.template(e)
	if err != nil {
		return "", nil, err
	}
	inst.cur, inst.got = s, nil
	var b strings.Builder
	err = t.Execute(&b, d)
	return b.String(), inst.got, err
}
