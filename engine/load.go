package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"gokube/modules"
)

// Pos is a place in a source file; every play, task and key keeps one so
// errors can name it.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// LoadError is a problem in a playbook, role or vars file. It exits 1.
type LoadError struct {
	Pos Pos
	Msg string
}

func (e *LoadError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ExitCode makes parse errors exit like Ansible's usage errors.
func (e *LoadError) ExitCode() int { return 1 }

func errAt(p Pos, format string, args ...any) error {
	return &LoadError{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// src is a file either on disk (fsys nil) or inside a bundled fs.FS.
type src struct {
	fsys    fs.FS
	path    string // OS path, or slash path inside fsys
	display string // what messages show
}

func (s src) read() ([]byte, error) {
	if s.fsys == nil {
		return os.ReadFile(s.path)
	}
	return fs.ReadFile(s.fsys, s.path)
}

func (s src) dir() src {
	if s.fsys == nil {
		return src{path: filepath.Dir(s.path), display: filepath.Dir(s.display)}
	}
	return src{fsys: s.fsys, path: path.Dir(s.path), display: path.Dir(s.display)}
}

// join resolves rel against the directory s.
func (s src) join(rel string) src {
	if s.fsys == nil {
		if filepath.IsAbs(rel) {
			return src{path: rel, display: rel}
		}
		return src{path: filepath.Join(s.path, rel), display: filepath.Join(s.display, rel)}
	}
	return src{fsys: s.fsys, path: path.Join(s.path, rel), display: path.Join(s.display, rel)}
}

func (s src) exists() bool {
	var err error
	if s.fsys == nil {
		_, err = os.Stat(s.path)
	} else {
		_, err = fs.Stat(s.fsys, s.path)
	}
	return err == nil
}

// asFS returns the directory s as an fs.FS (for modules' Env.Files).
func (s src) asFS() fs.FS {
	if s.fsys == nil {
		return os.DirFS(s.path)
	}
	sub, err := fs.Sub(s.fsys, s.path)
	if err != nil {
		return s.fsys
	}
	return sub
}

func displayPath(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}

// Playbook is a parsed playbook with its imports expanded.
type Playbook struct {
	Path  string
	Dir   string
	Plays []*Play
}

// Play is one play. Tasks holds the whole run order: facts, pre_tasks,
// roles, tasks, post_tasks with implicit handler flushes in between.
type Play struct {
	Pos               Pos
	Name              string
	Hosts             string
	Vars              map[string]any
	VarsFiles         []map[string]any
	Roles             []*Role // every role loaded by the play (incl. deps), load order
	Tasks             []*Task
	Handlers          []*Task
	Become            *bool
	BecomeUser        string
	GatherFacts       bool
	Serial            []string
	Strategy          string
	AnyErrorsFatal    bool
	MaxFailPercentage float64 // <0: unset
	Tags              []string
	Environment       map[string]any
	Dir               src // the playbook directory
	seq               []*Task
}

// Role is a loaded role.
type Role struct {
	Name     string
	Dir      src
	Defaults map[string]any
	Vars     map[string]any
	Tasks    []*Task
	Handlers []*Task
	Deps     []*Role
}

// Cond is one condition expression with its place.
type Cond struct {
	Expr string
	Pos  Pos
}

// Task is one task, a block, or a handler.
type Task struct {
	Pos      Pos
	Name     string
	Action   string // module or engine action; "" for a block
	Args     map[string]any
	ArgPos   map[string]Pos
	Module   modules.Module // nil for engine actions
	Spec     modules.Spec
	When     []Cond
	Loop     any
	HasLoop  bool
	LoopPos  Pos
	LoopVar  string
	Label    string
	IndexVar string
	Register string
	Until    []Cond
	Retries  any
	Delay    any
	Changed  []Cond
	HasChg   bool
	Failed   []Cond
	HasFail  bool
	Ignore   bool
	Notify   []string
	Listen   []string
	Tags     []string // effective, incl. inherited
	Become   *bool
	BUser    *string
	RunOnce  bool
	Delegate string
	NoLog    bool
	Env      map[string]any // effective environment (outer first, inner wins)
	Check    *bool
	Timeout  time.Duration
	Vars     map[string]any
	Block    []*Task
	Rescue   []*Task
	Always   []*Task
	IsBlock  bool
	// Scope, inherited from the enclosing blocks, includes and role.
	BlockVars []map[string]any // outer to inner
	Role      *Role
	Implicit  bool // synthetic task (facts, handler flush); not listed
	Ord       ord
	seq       int // index in the play's look-ahead sequence, -1 if none
}

// ord orders tasks in a play: tasks by major; handlers run at the flush
// point whose major they share, in minor order.
type ord struct{ major, minor int }

func (a ord) less(b ord) bool {
	return a.major < b.major || a.major == b.major && a.minor < b.minor
}

// Display is the task's name as the output shows it.
func (t *Task) Display() string {
	n := t.Name
	if n == "" {
		n = t.Action
	}
	if t.Role != nil {
		return t.Role.Name + " : " + n
	}
	return n
}

var playKeys = map[string]bool{"hosts": true, "name": true, "vars": true, "vars_files": true, "roles": true,
	"pre_tasks": true, "tasks": true, "post_tasks": true, "handlers": true, "become": true, "become_user": true,
	"gather_facts": true, "serial": true, "strategy": true, "any_errors_fatal": true, "max_fail_percentage": true,
	"tags": true, "environment": true}

var taskKeys = map[string]bool{"name": true, "when": true, "loop": true, "with_items": true, "loop_control": true,
	"register": true, "until": true, "retries": true, "delay": true, "changed_when": true, "failed_when": true,
	"ignore_errors": true, "notify": true, "tags": true, "become": true, "become_user": true, "run_once": true,
	"delegate_to": true, "no_log": true, "environment": true, "check_mode": true, "timeout": true, "vars": true,
	"args": true, "listen": true, "block": true, "rescue": true, "always": true}

// engineActions are run by the engine itself, not by a host module.
var engineActions = map[string]modules.Spec{
	"debug": {Args: map[string]modules.Arg{"msg": {Type: modules.Any}, "var": {Type: modules.String},
		"verbosity": {Type: modules.Int}}},
	"set_fact": {},
	"assert": {Args: map[string]modules.Arg{"that": {Type: modules.Any, Required: true},
		"fail_msg": {Type: modules.String, Aliases: []string{"msg"}}, "success_msg": {Type: modules.String},
		"quiet": {Type: modules.Bool}}},
	"fail":  {Args: map[string]modules.Arg{"msg": {Type: modules.String}}},
	"pause": {Args: map[string]modules.Arg{"seconds": {Type: modules.Int}, "minutes": {Type: modules.Int}, "prompt": {Type: modules.String}}},
	"meta": {FreeForm: "_raw", Args: map[string]modules.Arg{"_raw": {Type: modules.String, Required: true,
		Choices: []string{"flush_handlers", "end_play", "end_host", "noop", "clear_facts", "refresh_inventory", "clear_host_errors", "reset_connection"}}}},
	"setup":         {Args: map[string]modules.Arg{"gather_subset": {Type: modules.Any}, "filter": {Type: modules.Any}}},
	"include_tasks": {FreeForm: "file", Args: map[string]modules.Arg{"file": {Type: modules.String, Required: true}, "apply": {Type: modules.Map}}},
	"import_tasks":  {FreeForm: "file", Args: map[string]modules.Arg{"file": {Type: modules.String, Required: true}}},
	"include_role": {Args: map[string]modules.Arg{"name": {Type: modules.String, Required: true}, "tasks_from": {Type: modules.String},
		"defaults_from": {Type: modules.String}, "vars_from": {Type: modules.String}, "handlers_from": {Type: modules.String},
		"public": {Type: modules.Bool}, "apply": {Type: modules.Map}}},
	"include_vars": {FreeForm: "file", Args: map[string]modules.Arg{"file": {Type: modules.String, Required: true}, "name": {Type: modules.String}}},
}

// normAction strips the collection prefixes playbooks written for Ansible use.
func normAction(k string) string {
	for _, p := range []string{"ansible.builtin.", "ansible.legacy.", "ansible.posix.", "community.general."} {
		k = strings.TrimPrefix(k, p)
	}
	if k == "import_role" {
		return "include_role"
	}
	if k == "systemd_service" {
		return "systemd"
	}
	return k
}

type loader struct {
	reg      *modules.Registry
	bundled  fs.FS
	pbDir    src
	roleMemo map[string]*Role
	stack    []string // role names being loaded (cycle detection)
	incStack []string // task files being included
	play     *Play
}

// LoadPlaybook parses a playbook and everything it imports, and validates
// every task's arguments. No host is contacted.
func LoadPlaybook(file string, reg *modules.Registry, bundled fs.FS) (*Playbook, error) {
	if reg == nil {
		reg = modules.NewRegistry()
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	l := &loader{reg: reg, bundled: bundled, roleMemo: map[string]*Role{}}
	l.pbDir = src{path: filepath.Dir(abs), display: filepath.Dir(displayPath(abs))}
	pb := &Playbook{Path: abs, Dir: filepath.Dir(abs)}
	plays, err := l.loadPlaybookFile(src{path: abs, display: displayPath(abs)}, nil)
	if err != nil {
		return nil, err
	}
	pb.Plays = plays
	return pb, nil
}

func parseYAML(s src) (*yaml.Node, error) {
	b, err := s.read()
	if err != nil {
		return nil, &LoadError{Pos: Pos{File: s.display}, Msg: err.Error()}
	}
	return parseYAMLBytes(b, s.display)
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
		return nil, &LoadError{Pos: Pos{name, line}, Msg: msg}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.SequenceNode, Line: 1}, nil
	}
	return doc.Content[0], nil
}

// enter pushes file on the include stack, refusing a cycle; leave pops it.
func (l *loader) enter(file, kind string) (leave func(), err error) {
	for _, f := range l.incStack {
		if f == file {
			return nil, errAt(Pos{File: file}, "%s cycle: %s -> %s", kind, strings.Join(l.incStack, " -> "), file)
		}
	}
	l.incStack = append(l.incStack, file)
	return func() { l.incStack = l.incStack[:len(l.incStack)-1] }, nil
}

func (l *loader) loadPlaybookFile(s src, vars map[string]any) ([]*Play, error) {
	leave, err := l.enter(s.display, "import_playbook")
	if err != nil {
		return nil, err
	}
	defer leave()
	root, err := parseYAML(s)
	if err != nil {
		return nil, err
	}
	if root.Kind != yaml.SequenceNode {
		return nil, errAt(Pos{s.display, root.Line}, "a playbook is a list of plays")
	}
	var plays []*Play
	for _, n := range root.Content {
		p := Pos{s.display, n.Line}
		if n.Kind != yaml.MappingNode {
			return nil, errAt(p, "a play must be a mapping")
		}
		if v := mapGet(n, "import_playbook"); v != nil {
			var ivars map[string]any
			for i := 0; i < len(n.Content); i += 2 {
				k := n.Content[i].Value
				switch k {
				case "import_playbook", "name":
				case "vars":
					if err := n.Content[i+1].Decode(&ivars); err != nil {
						return nil, errAt(Pos{s.display, n.Content[i].Line}, "vars: %v", err)
					}
				default:
					return nil, errAt(Pos{s.display, n.Content[i].Line}, "unknown key %q in import_playbook", k)
				}
			}
			merged := mergeMaps(vars, ivars)
			sub, err := l.loadPlaybookFile(s.dir().join(v.Value), merged)
			if err != nil {
				return nil, err
			}
			plays = append(plays, sub...)
			continue
		}
		pl, err := l.loadPlay(s, n, vars)
		if err != nil {
			return nil, err
		}
		plays = append(plays, pl)
	}
	return plays, nil
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
		return nil, errAt(p, "%s: %v", what, err)
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
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

func (l *loader) loadPlay(s src, n *yaml.Node, ivars map[string]any) (*Play, error) {
	file := s.display
	pl := &Play{Pos: Pos{file, n.Line}, Vars: mergeMaps(ivars), GatherFacts: true, Strategy: "linear",
		MaxFailPercentage: -1, Dir: s.dir()}
	l.play = pl
	var pre, main, post, handlers *yaml.Node
	var roleNodes *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := Pos{file, k.Line}
		if !playKeys[k.Value] {
			return nil, errAt(p, "unknown key %q in play", k.Value)
		}
		var err error
		switch k.Value {
		case "hosts":
			if v.Kind == yaml.SequenceNode {
				var hs []string
				hs, err = strList(v, p, "hosts")
				pl.Hosts = strings.Join(hs, ":")
			} else {
				pl.Hosts = v.Value
			}
		case "name":
			pl.Name = v.Value
		case "vars":
			var m map[string]any
			m, err = decodeMap(v, p, "vars")
			for k, x := range m {
				pl.Vars[k] = x
			}
		case "vars_files":
			var files []string
			files, err = strList(v, p, "vars_files")
			for _, f := range files {
				m, err := loadVarsFile(pl.Dir.join(f), p)
				if err != nil {
					return nil, err
				}
				pl.VarsFiles = append(pl.VarsFiles, m)
			}
		case "roles":
			roleNodes = v
		case "pre_tasks":
			pre = v
		case "tasks":
			main = v
		case "post_tasks":
			post = v
		case "handlers":
			handlers = v
		case "become":
			var b bool
			b, err = boolNode(v, p, "become")
			pl.Become = &b
		case "become_user":
			pl.BecomeUser = v.Value
		case "gather_facts":
			pl.GatherFacts, err = boolNode(v, p, "gather_facts")
		case "serial":
			pl.Serial, err = strList(v, p, "serial")
			for _, s := range pl.Serial {
				if _, e := parseSerial(s, 10); e != nil {
					err = errAt(p, "serial: %v", e)
				}
			}
		case "strategy":
			pl.Strategy = v.Value
			if v.Value != "linear" && v.Value != "free" {
				err = errAt(p, "strategy: %q is not linear or free", v.Value)
			}
		case "any_errors_fatal":
			pl.AnyErrorsFatal, err = boolNode(v, p, k.Value)
		case "max_fail_percentage":
			pl.MaxFailPercentage, err = strconv.ParseFloat(strings.TrimSuffix(v.Value, "%"), 64)
			if err != nil {
				err = errAt(p, "max_fail_percentage: %v", err)
			}
		case "tags":
			pl.Tags, err = strList(v, p, "tags")
		case "environment":
			pl.Environment, err = decodeMap(v, p, "environment")
		}
		if err != nil {
			return nil, err
		}
	}
	if pl.Hosts == "" {
		return nil, errAt(pl.Pos, "play has no hosts")
	}
	if pl.Name == "" {
		pl.Name = pl.Hosts
	}
	inh := inherit{tags: pl.Tags, env: pl.Environment}
	sect := func(n *yaml.Node, key string) ([]*Task, error) {
		if n == nil {
			return nil, nil
		}
		return l.loadTaskList(n, s, s.dir(), inh, nil, key)
	}
	var all []*Task
	if pl.GatherFacts {
		all = append(all, &Task{Pos: pl.Pos, Name: "Gathering Facts", Action: "setup", Args: map[string]any{},
			Implicit: true, Tags: []string{"always"}})
	}
	t, err := sect(pre, "pre_tasks")
	if err != nil {
		return nil, err
	}
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	// roles
	if roleNodes != nil {
		if roleNodes.Kind != yaml.SequenceNode {
			return nil, errAt(Pos{file, roleNodes.Line}, "roles must be a list")
		}
		seen := map[*Role]bool{}
		for _, rn := range roleNodes.Content {
			rt, err := l.playRole(rn, s, inh, seen)
			if err != nil {
				return nil, err
			}
			all = append(all, rt...)
		}
	}
	t, err = sect(main, "tasks")
	if err != nil {
		return nil, err
	}
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	t, err = sect(post, "post_tasks")
	if err != nil {
		return nil, err
	}
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	pl.Tasks = all
	for _, r := range pl.Roles {
		pl.Handlers = append(pl.Handlers, r.Handlers...)
	}
	h, err := sect(handlers, "handlers")
	if err != nil {
		return nil, err
	}
	pl.Handlers = append(pl.Handlers, h...)
	numberPlay(pl)
	if err := checkNotify(pl); err != nil {
		return nil, err
	}
	return pl, nil
}

// checkNotify reports a notify that names no handler (name or listen).
func checkNotify(pl *Play) error {
	known := map[string]bool{}
	for _, h := range pl.Handlers {
		known[h.Name] = true
		for _, l := range h.Listen {
			known[l] = true
		}
	}
	var walk func(ts []*Task) error
	walk = func(ts []*Task) error {
		for _, t := range ts {
			for _, n := range t.Notify {
				if !known[n] && !strings.Contains(n, "{{") {
					return errAt(t.Pos, "notify: no handler named or listening to %q", n)
				}
			}
			if err := walk(t.Block); err != nil {
				return err
			}
			if err := walk(t.Rescue); err != nil {
				return err
			}
			if err := walk(t.Always); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(pl.Tasks); err != nil {
		return err
	}
	return walk(pl.Handlers)
}

func flushTask(p Pos) *Task {
	return &Task{Pos: p, Action: "meta", Args: map[string]any{"_raw": "flush_handlers"}, Implicit: true, Tags: []string{"always"}}
}

// numberPlay assigns run-order ordinals (block, then rescue, then always).
func numberPlay(pl *Play) {
	n := 0
	var walk func(ts []*Task)
	walk = func(ts []*Task) {
		for _, t := range ts {
			n++
			t.Ord = ord{n, 0}
			t.seq = -1
			if t.IsBlock {
				walk(t.Block)
				walk(t.Rescue)
				walk(t.Always)
			}
		}
	}
	walk(pl.Tasks)
	for _, h := range pl.Handlers {
		h.seq = -1
	}
	// The look-ahead sequence: leaves on the path a host takes when nothing
	// fails (rescue sections are left out).
	pl.seq = nil
	var lin func(ts []*Task)
	lin = func(ts []*Task) {
		for _, t := range ts {
			if t.IsBlock {
				lin(t.Block)
				lin(t.Always)
				continue
			}
			t.seq = len(pl.seq)
			pl.seq = append(pl.seq, t)
		}
	}
	lin(pl.Tasks)
}

func loadVarsFile(s src, p Pos) (map[string]any, error) {
	root, err := parseYAML(s)
	if err != nil {
		return nil, err
	}
	if root.Kind == yaml.SequenceNode && len(root.Content) == 0 {
		return map[string]any{}, nil
	}
	return decodeMap(root, Pos{s.display, root.Line}, "vars file")
}

type inherit struct {
	tags      []string
	env       map[string]any
	when      []Cond
	become    *bool
	buser     *string
	blockVars []map[string]any
	role      *Role
	delegate  string
	runOnce   bool
	noLog     bool
	ignore    bool
	check     *bool
}

func (in inherit) addTags(t []string) inherit {
	in.tags = append(append([]string(nil), in.tags...), t...)
	return in
}

// playRole loads a `roles:` entry (with its dependencies) into tasks.
func (l *loader) playRole(rn *yaml.Node, s src, inh inherit, seen map[*Role]bool) ([]*Task, error) {
	p := Pos{s.display, rn.Line}
	name := rn.Value
	var params map[string]any
	in := inh
	if rn.Kind == yaml.MappingNode {
		params = map[string]any{}
		for i := 0; i+1 < len(rn.Content); i += 2 {
			k, v := rn.Content[i], rn.Content[i+1]
			kp := Pos{s.display, k.Line}
			switch k.Value {
			case "role", "name":
				name = v.Value
			case "tags":
				t, err := strList(v, kp, "tags")
				if err != nil {
					return nil, err
				}
				in = in.addTags(t)
			case "when":
				c, err := condList(v, s.display, "when")
				if err != nil {
					return nil, err
				}
				in.when = append(append([]Cond(nil), in.when...), c...)
			case "become":
				b, err := boolNode(v, kp, "become")
				if err != nil {
					return nil, err
				}
				in.become = &b
			case "become_user":
				u := v.Value
				in.buser = &u
			case "vars":
				m, err := decodeMap(v, kp, "vars")
				if err != nil {
					return nil, err
				}
				for k, x := range m {
					params[k] = x
				}
			default:
				// Any other key is a role parameter, as in Ansible.
				x, err := decodeAny(v)
				if err != nil {
					return nil, errAt(kp, "%s: %v", k.Value, err)
				}
				params[k.Value] = x
			}
		}
	} else if rn.Kind != yaml.ScalarNode {
		return nil, errAt(p, "a role entry is a name or a mapping")
	}
	if name == "" {
		return nil, errAt(p, "role entry without a role name")
	}
	return l.roleTasks(name, "main", p, in, params, seen)
}

// roleTasks returns the tasks of a role preceded by those of its
// dependencies (each role at most once per play unless it has params).
func (l *loader) roleTasks(name, tasksFrom string, p Pos, in inherit, params map[string]any, seen map[*Role]bool) ([]*Task, error) {
	r, err := l.loadRole(name, p)
	if err != nil {
		return nil, err
	}
	var out []*Task
	for _, d := range r.Deps {
		if seen[d] {
			continue
		}
		dt, err := l.roleTasks(d.Name, "main", p, in, nil, seen)
		if err != nil {
			return nil, err
		}
		out = append(out, dt...)
	}
	if seen[r] && len(params) == 0 && tasksFrom == "main" {
		return out, nil
	}
	seen[r] = true
	tf := r.Dir.join("tasks/" + tasksFrom + ".yml")
	if !tf.exists() {
		if alt := r.Dir.join("tasks/" + tasksFrom + ".yaml"); alt.exists() {
			tf = alt
		} else if tasksFrom != "main" {
			return nil, errAt(p, "role %s has no tasks/%s.yml", name, tasksFrom)
		} else {
			return out, nil
		}
	}
	in.role = r
	if len(params) > 0 {
		in.blockVars = append(append([]map[string]any(nil), in.blockVars...), params)
	}
	ts, err := l.loadTaskFile(tf, r.Dir.join("tasks"), in)
	if err != nil {
		return nil, err
	}
	return append(out, ts...), nil
}

func (l *loader) findRole(name string) (src, bool) {
	if filepath.IsAbs(name) || strings.Contains(name, "/") {
		d := l.pbDir.join(name)
		return d, d.exists()
	}
	d := l.pbDir.join("roles").join(name)
	if d.exists() {
		return d, true
	}
	if l.bundled != nil {
		for _, p := range []string{name, "roles/" + name} {
			if _, err := fs.Stat(l.bundled, p); err == nil {
				return src{fsys: l.bundled, path: p, display: "roles/" + name}, true
			}
		}
	}
	return src{}, false
}

func (l *loader) loadRole(name string, p Pos) (*Role, error) {
	for _, s := range l.stack {
		if s == name {
			return nil, errAt(p, "role dependency cycle: %s -> %s", strings.Join(l.stack, " -> "), name)
		}
	}
	if r, ok := l.roleMemo[name]; ok {
		addRole(l.play, r)
		return r, nil
	}
	dir, ok := l.findRole(name)
	if !ok {
		return nil, errAt(p, "role %q not found (looked in %s and the bundled roles)", name, l.pbDir.join("roles").display)
	}
	l.stack = append(l.stack, name)
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()
	r := &Role{Name: path.Base(filepath.ToSlash(name)), Dir: dir, Defaults: map[string]any{}, Vars: map[string]any{}}
	for _, d := range []struct {
		sub string
		dst *map[string]any
	}{{"defaults/main", &r.Defaults}, {"vars/main", &r.Vars}} {
		for _, ext := range []string{".yml", ".yaml"} {
			f := dir.join(d.sub + ext)
			if f.exists() {
				m, err := loadVarsFile(f, p)
				if err != nil {
					return nil, err
				}
				*d.dst = m
				break
			}
		}
	}
	for _, ext := range []string{".yml", ".yaml"} {
		f := dir.join("meta/main" + ext)
		if !f.exists() {
			continue
		}
		root, err := parseYAML(f)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			k, v := root.Content[i], root.Content[i+1]
			switch k.Value {
			case "dependencies":
				for _, dn := range v.Content {
					dname := dn.Value
					if dn.Kind == yaml.MappingNode {
						if x := mapGet(dn, "role"); x != nil {
							dname = x.Value
						} else if x := mapGet(dn, "name"); x != nil {
							dname = x.Value
						}
					}
					dep, err := l.loadRole(dname, Pos{f.display, dn.Line})
					if err != nil {
						return nil, err
					}
					r.Deps = append(r.Deps, dep)
				}
			case "galaxy_info", "allow_duplicates", "argument_specs":
			default:
				return nil, errAt(Pos{f.display, k.Line}, "unknown key %q in role meta", k.Value)
			}
		}
		break
	}
	for _, ext := range []string{".yml", ".yaml"} {
		f := dir.join("handlers/main" + ext)
		if f.exists() {
			hs, err := l.loadTaskFile(f, dir.join("tasks"), inherit{role: r})
			if err != nil {
				return nil, err
			}
			r.Handlers = hs
			break
		}
	}
	l.roleMemo[name] = r
	addRole(l.play, r)
	return r, nil
}

func addRole(pl *Play, r *Role) {
	for _, x := range pl.Roles {
		if x == r {
			return
		}
	}
	pl.Roles = append(pl.Roles, r)
}

func (l *loader) loadTaskFile(f src, base src, in inherit) ([]*Task, error) {
	leave, err := l.enter(f.display, "include")
	if err != nil {
		return nil, err
	}
	defer leave()
	root, err := parseYAML(f)
	if err != nil {
		return nil, err
	}
	if root.Kind == yaml.ScalarNode && (root.Tag == "!!null" || root.Value == "") {
		return nil, nil
	}
	return l.loadTaskList(root, f, base, in, nil, "tasks")
}

func (l *loader) loadTaskList(n *yaml.Node, f src, base src, in inherit, pl *Play, what string) ([]*Task, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errAt(Pos{f.display, n.Line}, "%s must be a list", what)
	}
	var out []*Task
	for _, tn := range n.Content {
		ts, err := l.loadTask(tn, f, base, in)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

// loadTask parses one list entry; includes expand into several tasks.
func (l *loader) loadTask(n *yaml.Node, f src, base src, in inherit) ([]*Task, error) {
	file := f.display
	p := Pos{file, n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, errAt(p, "a task must be a mapping")
	}
	t := &Task{Pos: p, Role: in.role, ArgPos: map[string]Pos{}}
	var actionKey, actionVal *yaml.Node
	var argsNode *yaml.Node
	var blk, rsc, alw *yaml.Node
	var ownTags []string
	var ownEnv map[string]any
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := Pos{file, k.Line}
		var err error
		if !taskKeys[k.Value] {
			a := normAction(k.Value)
			_, eng := engineActions[a]
			_, mod := l.reg.Lookup(a)
			if !eng && !mod {
				return nil, errAt(kp, "unknown key %q in task (not a task keyword, module or action)", k.Value)
			}
			if actionKey != nil {
				return nil, errAt(kp, "task has two actions: %q and %q", actionKey.Value, k.Value)
			}
			actionKey, actionVal = k, v
			t.Action = a
			continue
		}
		switch k.Value {
		case "name":
			t.Name = v.Value
		case "when":
			t.When, err = condList(v, file, "when")
		case "loop", "with_items":
			if t.HasLoop {
				return nil, errAt(kp, "task has both loop and with_items")
			}
			t.HasLoop, t.LoopPos = true, kp
			if v.Kind == yaml.ScalarNode && v.Tag != "!!str" && v.Tag != "!!null" {
				return nil, errAt(kp, "%s: want a list or a template", k.Value)
			}
			t.Loop, err = decodeAny(v)
			if k.Value == "with_items" {
				if lst, ok := t.Loop.([]any); ok {
					t.Loop = flatten1(lst)
				}
			}
		case "loop_control":
			if v.Kind != yaml.MappingNode {
				return nil, errAt(kp, "loop_control must be a mapping")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				lk, lv := v.Content[j], v.Content[j+1]
				switch lk.Value {
				case "loop_var":
					t.LoopVar = lv.Value
				case "label":
					t.Label = lv.Value
				case "index_var":
					t.IndexVar = lv.Value
				case "extended", "pause":
				default:
					return nil, errAt(Pos{file, lk.Line}, "unknown key %q in loop_control", lk.Value)
				}
			}
		case "register":
			t.Register = v.Value
		case "until":
			t.Until, err = condList(v, file, "until")
		case "retries":
			t.Retries, err = decodeAny(v)
		case "delay":
			t.Delay, err = decodeAny(v)
		case "changed_when":
			t.Changed, err = condList(v, file, "changed_when")
			t.HasChg = true
		case "failed_when":
			t.Failed, err = condList(v, file, "failed_when")
			t.HasFail = true
		case "ignore_errors":
			t.Ignore, err = boolNode(v, kp, k.Value)
		case "notify":
			t.Notify, err = strList(v, kp, "notify")
		case "listen":
			t.Listen, err = strList(v, kp, "listen")
		case "tags":
			ownTags, err = strList(v, kp, "tags")
		case "become":
			var b bool
			b, err = boolNode(v, kp, k.Value)
			t.Become = &b
		case "become_user":
			u := v.Value
			t.BUser = &u
		case "run_once":
			t.RunOnce, err = boolNode(v, kp, k.Value)
		case "delegate_to":
			t.Delegate = v.Value
		case "no_log":
			t.NoLog, err = boolNode(v, kp, k.Value)
		case "environment":
			ownEnv, err = decodeMap(v, kp, "environment")
		case "check_mode":
			var b bool
			b, err = boolNode(v, kp, k.Value)
			t.Check = &b
		case "timeout":
			var secs int
			secs, err = strconv.Atoi(v.Value)
			if err != nil {
				err = errAt(kp, "timeout: want seconds, got %q", v.Value)
			}
			t.Timeout = time.Duration(secs) * time.Second
		case "vars":
			t.Vars, err = decodeMap(v, kp, "vars")
		case "args":
			argsNode = v
		case "block":
			blk = v
		case "rescue":
			rsc = v
		case "always":
			alw = v
		}
		if err != nil {
			if _, ok := err.(*LoadError); !ok {
				err = errAt(kp, "%s: %v", k.Value, err)
			}
			return nil, err
		}
	}
	// Inherited settings: outer first, the task's own win.
	t.Tags = append(append([]string(nil), in.tags...), ownTags...)
	t.When = append(append([]Cond(nil), in.when...), t.When...)
	if len(in.env) > 0 || len(ownEnv) > 0 {
		t.Env = mergeMaps(in.env, ownEnv)
	}
	if t.Become == nil {
		t.Become = in.become
	}
	if t.BUser == nil {
		t.BUser = in.buser
	}
	if t.Check == nil {
		t.Check = in.check
	}
	if t.Delegate == "" {
		t.Delegate = in.delegate
	}
	t.RunOnce = t.RunOnce || in.runOnce
	t.NoLog = t.NoLog || in.noLog
	t.Ignore = t.Ignore || in.ignore
	t.BlockVars = in.blockVars

	if blk != nil {
		if actionKey != nil {
			return nil, errAt(p, "a block cannot also have an action (%s)", actionKey.Value)
		}
		if t.HasLoop {
			return nil, errAt(p, "a block cannot loop")
		}
		t.IsBlock = true
		cin := in
		cin.tags = t.Tags
		cin.when = t.When
		cin.env = t.Env
		cin.become, cin.buser, cin.check = t.Become, t.BUser, t.Check
		cin.delegate, cin.runOnce, cin.noLog, cin.ignore = t.Delegate, t.RunOnce, t.NoLog, t.Ignore
		if len(t.Vars) > 0 {
			cin.blockVars = append(append([]map[string]any(nil), in.blockVars...), t.Vars)
		}
		var err error
		if t.Block, err = l.loadTaskList(blk, f, base, cin, nil, "block"); err != nil {
			return nil, err
		}
		if rsc != nil {
			if t.Rescue, err = l.loadTaskList(rsc, f, base, cin, nil, "rescue"); err != nil {
				return nil, err
			}
		}
		if alw != nil {
			if t.Always, err = l.loadTaskList(alw, f, base, cin, nil, "always"); err != nil {
				return nil, err
			}
		}
		// The block's own conditions were handed down to every child.
		t.When = nil
		return []*Task{t}, nil
	}
	if rsc != nil || alw != nil {
		return nil, errAt(p, "rescue/always without block")
	}
	if actionKey == nil {
		return nil, errAt(p, "task has no action (module)")
	}
	spec, eng := engineActions[t.Action]
	if !eng {
		m, _ := l.reg.Lookup(t.Action)
		t.Module = m
		spec = m.Spec()
	}
	t.Spec = spec
	args, err := parseArgs(actionVal, file, t.Action, spec, t.ArgPos)
	if err != nil {
		return nil, err
	}
	if argsNode != nil {
		extra, err := decodeMap(argsNode, Pos{file, argsNode.Line}, "args")
		if err != nil {
			return nil, err
		}
		for k, v := range extra {
			args[k] = v
			t.ArgPos[k] = Pos{file, argsNode.Line}
		}
	}
	t.Args = args
	if t.Action != "set_fact" {
		if err := validateArgs(t.Action, spec, t.Args, t.ArgPos, p); err != nil {
			return nil, err
		}
	}
	if err := checkTemplates(t); err != nil {
		return nil, err
	}
	switch t.Action {
	case "import_tasks", "include_tasks":
		return l.expandInclude(t, f, base, in)
	case "include_role":
		return l.expandIncludeRole(t, in)
	}
	return []*Task{t}, nil
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

// childInherit is what an include hands to the tasks it includes.
func childInherit(t *Task, in inherit) inherit {
	c := in
	c.tags = t.Tags
	c.when = t.When
	c.env = t.Env
	c.become, c.buser, c.check = t.Become, t.BUser, t.Check
	c.delegate, c.runOnce, c.noLog, c.ignore = t.Delegate, t.RunOnce, t.NoLog, t.Ignore
	if len(t.Vars) > 0 {
		c.blockVars = append(append([]map[string]any(nil), in.blockVars...), t.Vars)
	}
	return c
}

// expandInclude loads an include_tasks/import_tasks statically. The file
// name may not be templated: the plan must be known before any host runs.
func (l *loader) expandInclude(t *Task, f src, base src, in inherit) ([]*Task, error) {
	name, _ := t.Args["file"].(string)
	if strings.Contains(name, "{{") {
		return nil, errAt(t.Pos, "%s: templated file names are not supported (%q)", t.Action, name)
	}
	if t.HasLoop {
		return nil, errAt(t.Pos, "%s: loops over includes are not supported", t.Action)
	}
	cand := []src{base.join(name), f.dir().join(name)}
	if in.role != nil {
		cand = append([]src{in.role.Dir.join("tasks").join(name)}, cand...)
	}
	for _, c := range cand {
		if c.exists() {
			return l.loadTaskFile(c, base, childInherit(t, in))
		}
	}
	return nil, errAt(t.Pos, "%s: %s not found", t.Action, name)
}

func (l *loader) expandIncludeRole(t *Task, in inherit) ([]*Task, error) {
	name, _ := t.Args["name"].(string)
	from, _ := t.Args["tasks_from"].(string)
	if strings.Contains(name+from, "{{") {
		return nil, errAt(t.Pos, "include_role: templated names are not supported")
	}
	if from == "" {
		from = "main"
	}
	from = strings.TrimSuffix(strings.TrimSuffix(from, ".yml"), ".yaml")
	if t.HasLoop {
		return nil, errAt(t.Pos, "include_role: loops are not supported")
	}
	// Roles pulled in by include_role join the current play's role set so
	// their defaults and handlers are known; the loader tracks the play via
	// the memo, handlers are collected by the play after loading.
	c := childInherit(t, in)
	return l.roleTasks(name, from, t.Pos, c, nil, map[*Role]bool{})
}

// parseArgs turns a module's value (mapping, k=v string or free form) into args.
func parseArgs(v *yaml.Node, file, action string, spec modules.Spec, pos map[string]Pos) (map[string]any, error) {
	p := Pos{file, v.Line}
	args := map[string]any{}
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			x, err := decodeAny(v.Content[i+1])
			if err != nil {
				return nil, errAt(Pos{file, k.Line}, "%s: %v", k.Value, err)
			}
			args[k.Value] = x
			pos[k.Value] = Pos{file, k.Line}
		}
	case yaml.ScalarNode:
		if v.Tag == "!!null" || v.Value == "" {
			return args, nil
		}
		s := v.Value
		if spec.FreeForm != "" {
			rest, kv := splitTrailingKV(s, spec)
			for k, x := range kv {
				args[k] = x
				pos[k] = p
			}
			if rest != "" {
				args[spec.FreeForm] = rest
				pos[spec.FreeForm] = p
			}
			return args, nil
		}
		toks, err := shellSplit(s)
		if err != nil {
			return nil, errAt(p, "%s: %v", action, err)
		}
		for _, tok := range toks {
			k, x, ok := strings.Cut(tok, "=")
			if !ok {
				return nil, errAt(p, "%s: %q is not key=value", action, tok)
			}
			args[k] = x
			pos[k] = p
		}
	default:
		return nil, errAt(p, "%s: arguments must be a mapping or key=value string", action)
	}
	return args, nil
}

// splitTrailingKV pulls known key=value options off the end of a free-form
// command, as Ansible does (`shell: make all chdir=/src`).
func splitTrailingKV(s string, spec modules.Spec) (string, map[string]any) {
	kv := map[string]any{}
	fields := strings.Fields(s)
	end := len(fields)
	for end > 0 {
		k, v, ok := strings.Cut(fields[end-1], "=")
		if !ok || k == spec.FreeForm || !argKnown(spec, k) || strings.ContainsAny(v, "'\"") {
			break
		}
		kv[k] = v
		end--
	}
	if end == len(fields) {
		return s, kv
	}
	// Keep the command's own spacing: cut at the first removed field.
	rest := s
	idx := 0
	for i := 0; i < end; i++ {
		j := strings.Index(rest[idx:], fields[i])
		idx += j + len(fields[i])
	}
	return strings.TrimSpace(rest[:idx]), kv
}

func argKnown(spec modules.Spec, k string) bool {
	if _, ok := spec.Args[k]; ok {
		return true
	}
	for _, a := range spec.Args {
		for _, al := range a.Aliases {
			if al == k {
				return true
			}
		}
	}
	return false
}

func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var q rune
	in := false
	for _, r := range s {
		switch {
		case q != 0:
			if r == q {
				q = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			q, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if q != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// validateArgs checks the task's arguments against the module's Spec (see
// modules.CheckArgs, which also renames aliases to canonical names) and
// names the file and line of the offending key. A module that declares no
// arguments accepts any.
func validateArgs(action string, spec modules.Spec, args map[string]any, pos map[string]Pos, tp Pos) error {
	if spec.Args == nil && spec.FreeForm == "" {
		return nil
	}
	err := modules.CheckArgs(action, spec, args)
	var ce *modules.CheckArgsError
	if errors.As(err, &ce) {
		at := tp
		if p, ok := pos[ce.Key]; ok {
			at = p
		}
		return errAt(at, "%s", ce)
	}
	if err != nil {
		return errAt(tp, "%v", err)
	}
	// Errors found at run time name the canonical argument; point them at
	// the line of the alias the user wrote.
	for name, a := range spec.Args {
		for _, al := range a.Aliases {
			if p, ok := pos[al]; ok {
				pos[name] = p
			}
		}
	}
	return nil
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// coerceArgs converts rendered values to the declared types so modules get
// a bool for `enabled: "{{ .x }}"` rendered as "true".
func coerceArgs(spec modules.Spec, args map[string]any) {
	for k, a := range spec.Args {
		v, ok := args[k]
		if !ok || v == nil {
			continue
		}
		switch a.Type {
		case modules.Bool:
			if b, ok := modules.AsBool(v); ok {
				args[k] = b
			}
		case modules.Int:
			if n, ok := modules.AsInt(v); ok {
				args[k] = n
			}
		case modules.String:
			switch v.(type) {
			case int, float64, bool:
				args[k] = fmt.Sprint(v)
			}
		}
	}
}

// parseSerial turns "3" or "30%" into a batch size for n hosts.
func parseSerial(s string, n int) (int, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 {
			return 0, fmt.Errorf("bad percentage %q", s)
		}
		k := int(float64(n) * f / 100)
		if k < 1 {
			k = 1
		}
		return k, nil
	}
	k, err := strconv.Atoi(s)
	if err != nil || k < 0 {
		return 0, fmt.Errorf("bad batch size %q", s)
	}
	if k == 0 {
		k = n
	}
	return k, nil
}
