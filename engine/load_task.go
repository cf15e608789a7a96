package engine

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"gokube/modules"
)

// engineActions are run by the engine itself, not by a host module. Their
// Docs feed `gokube doc` like the modules' (ActionSpecs).
var engineActions = map[string]modules.Spec{
	"debug": {Doc: "Prints a message or a variable's value; changes nothing.",
		Args: map[string]modules.Arg{
			"msg":       {Type: modules.Any, Doc: "Message to print (any value).", Default: "Hello world!"},
			"var":       {Type: modules.String, Doc: "Name of a variable (or an expression) whose value to print, instead of msg."},
			"verbosity": {Type: modules.Int, Doc: "Print only at this -v level or above.", Default: "0"},
		}},
	"set_fact": {Doc: "Sets host variables (facts) from its arguments: every key becomes a variable of the host, rendered now. cacheable is accepted and ignored.",
		Returns: map[string]string{"ansible_facts": "the variables set"}},
	"assert": {Doc: "Fails the host unless every condition in that is true.",
		Args: map[string]modules.Arg{
			"that":        {Type: modules.Any, Required: true, Doc: "A condition or a list of conditions (Go template expressions, like when)."},
			"fail_msg":    {Type: modules.String, Aliases: []string{"msg"}, Doc: "Message when a condition is false."},
			"success_msg": {Type: modules.String, Doc: "Message when all are true."},
			"quiet":       {Type: modules.Bool, Doc: "Print less on success.", Default: "no"},
		}},
	"fail": {Doc: "Fails the host with a message (usually under when).",
		Args: map[string]modules.Arg{"msg": {Type: modules.String, Doc: "The failure message.", Default: "Failed as requested from task"}}},
	"pause": {Doc: "Waits a while on the control machine. gokube never reads the terminal, so a prompt needs seconds or minutes.",
		Args: map[string]modules.Arg{
			"seconds": {Type: modules.Int, Doc: "Seconds to wait."},
			"minutes": {Type: modules.Int, Doc: "Minutes to wait (added to seconds)."},
			"prompt":  {Type: modules.String, Doc: "Text shown while waiting."},
		},
		Returns: map[string]string{"delta": "seconds waited"}},
	"meta": {Doc: "Engine directives: flush_handlers runs notified handlers now, end_play and end_host stop, clear_facts forgets gathered facts, noop does nothing. Ansible's refresh_inventory, clear_host_errors and reset_connection are refused: gokube would only pretend to do them.",
		FreeForm: "_raw", Args: map[string]modules.Arg{"_raw": {Type: modules.String, Required: true,
			Choices: []string{"flush_handlers", "end_play", "end_host", "noop", "clear_facts"},
			Doc:     "The directive (free form: `meta: flush_handlers`)."}}},
	"setup": {Doc: "Gathers facts (one round trip: addresses, OS, CPU, memory, hostname); it runs implicitly at play start unless gather_facts is off.",
		// gather_subset and filter are refused (unknown arguments): gokube
		// gathers its one set of facts, so they would be parsed and ignored.
		Args: map[string]modules.Arg{}},
	"include_tasks": {Doc: "Runs the tasks of another file, loaded when the task is reached (the file name may be templated).",
		FreeForm: "file", Args: map[string]modules.Arg{
			"file": {Type: modules.String, Required: true, Doc: "Task file, relative to the including file's directory (or the role's tasks/)."},
		}},
	"import_tasks": {Doc: "Inserts the tasks of another file when the playbook is loaded.",
		FreeForm: "file", Args: map[string]modules.Arg{"file": {Type: modules.String, Required: true, Doc: "Task file, relative to the importing file's directory (or the role's tasks/)."}}},
	"include_role": {Doc: "Runs a role's tasks here (import_role is the same).",
		Args: map[string]modules.Arg{
			"name":       {Type: modules.String, Required: true, Doc: "The role (roles/ beside the playbook, then the bundled roles)."},
			"tasks_from": {Type: modules.String, Doc: "Task file of the role's tasks/ to run instead of main.yml.", Default: "main"},
		}},
	"include_vars": {Doc: "Loads variables from a YAML file into the host's variables.",
		FreeForm: "file", Args: map[string]modules.Arg{
			"file": {Type: modules.String, Required: true, Doc: "YAML file, looked up in the role's vars/, the directory of the file the task is in, then the playbook's directory."},
			"name": {Type: modules.String, Doc: "Put the file's variables under this one variable instead of at the top level."},
		},
		Returns: map[string]string{"ansible_facts": "the variables loaded"}},
}

// ActionSpecs returns the Specs of the actions the engine runs itself
// (debug, set_fact, assert, ...), for `gokube doc`.
func ActionSpecs() map[string]modules.Spec {
	out := make(map[string]modules.Spec, len(engineActions))
	for k, v := range engineActions {
		out[k] = v
	}
	return out
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
		return nil, errAt(Pos{f.where(), n.Line}, "%s must be a list", what)
	}
	// Every task is loaded, so one run reports all their errors; the
	// tasks that loaded come back with them.
	var out []*Task
	var errs errList
	for _, tn := range n.Content {
		ts, err := l.loadTask(tn, f, base, in)
		if errs.add(err) {
			continue
		}
		out = append(out, ts...)
	}
	return out, errs.err()
}

// loadTask parses one list entry; includes expand into several tasks.
func (l *loader) loadTask(n *yaml.Node, f src, base src, in inherit) ([]*Task, error) {
	p := Pos{f.where(), n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, errAt(p, "a task must be a mapping")
	}
	d := &taskDraft{t: &Task{Pos: p, Role: in.role, ArgPos: map[string]Pos{}}, file: f.where()}
	actionKey, actionVal, err := l.parseTaskKeys(d, n)
	if err != nil {
		return nil, err
	}
	t := d.t
	inheritInto(d, in)
	if d.block != nil {
		if actionKey != nil {
			return nil, errAt(p, "a block cannot also have an action (%s)", actionKey.Value)
		}
		if t.HasLoop {
			return nil, errAt(p, "a block cannot loop")
		}
		return l.loadBlock(d, f, base, in)
	}
	if d.rescue != nil || d.always != nil {
		return nil, errAt(p, "rescue/always without block")
	}
	if actionKey == nil {
		return nil, errAt(p, "task has no action (module)")
	}
	if err := l.loadAction(d, actionVal); err != nil {
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

// parseTaskKeys runs each key of a task through taskKeywords; a key that
// is not a keyword must name the task's one module or engine action.
func (l *loader) parseTaskKeys(d *taskDraft, n *yaml.Node) (actionKey, actionVal *yaml.Node, err error) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := Pos{d.file, k.Line}
		kw, ok := taskKeywords[k.Value]
		if !ok {
			a := normAction(k.Value)
			_, eng := engineActions[a]
			_, mod := l.reg.Lookup(a)
			if !eng && !mod {
				return nil, nil, errAt(kp, "unknown key %q in task (not a task keyword, module or action)%s", k.Value, l.suggestKey(k.Value))
			}
			if actionKey != nil {
				return nil, nil, errAt(kp, "task has two actions: %q and %q", actionKey.Value, k.Value)
			}
			actionKey, actionVal = k, v
			d.t.Action = a
			continue
		}
		if err := kw(d, k.Value, v, kp); err != nil {
			if _, ok := err.(*LoadError); !ok {
				err = errAt(kp, "%s: %w", k.Value, err)
			}
			return nil, nil, err
		}
	}
	return actionKey, actionVal, nil
}

// inheritInto merges what the task inherits from its blocks, includes and
// role: outer first, the task's own settings win.
func inheritInto(d *taskDraft, in inherit) {
	t := d.t
	t.Tags = append(append([]string(nil), in.tags...), d.tags...)
	t.When = append(append([]Cond(nil), in.when...), t.When...)
	if len(in.env) > 0 || len(d.env) > 0 {
		t.Env = mergeMaps(in.env, d.env)
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
}

// loadBlock loads a block's block, rescue and always sections; the
// children inherit the block's settings.
func (l *loader) loadBlock(d *taskDraft, f src, base src, in inherit) ([]*Task, error) {
	t := d.t
	t.IsBlock = true
	cin := childInherit(t, in)
	var err error
	var errs errList
	t.Block, err = l.loadTaskList(d.block, f, base, cin, nil, "block")
	errs.add(err)
	if d.rescue != nil {
		t.Rescue, err = l.loadTaskList(d.rescue, f, base, cin, nil, "rescue")
		errs.add(err)
	}
	if d.always != nil {
		t.Always, err = l.loadTaskList(d.always, f, base, cin, nil, "always")
		errs.add(err)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	// The block's own conditions were handed down to every child.
	t.When = nil
	return []*Task{t}, nil
}

// loadAction resolves the task's module or engine action and parses and
// checks its arguments (the action's value, then args:).
func (l *loader) loadAction(d *taskDraft, actionVal *yaml.Node) error {
	t, file := d.t, d.file
	spec, eng := engineActions[t.Action]
	if !eng {
		m, _ := l.reg.Lookup(t.Action)
		t.Module = m
		spec = m.Spec()
	}
	t.Spec = spec
	args, err := parseArgs(actionVal, file, t.Action, spec, t.ArgPos)
	if err != nil {
		return err
	}
	if d.args != nil {
		extra, err := decodeMap(d.args, Pos{file, d.args.Line}, "args")
		if err != nil {
			return err
		}
		for k, v := range extra {
			args[k] = v
			t.ArgPos[k] = Pos{file, d.args.Line}
		}
	}
	t.Args = args
	if t.Action != "set_fact" {
		if err := validateArgs(t.Action, spec, t.Args, t.ArgPos, t.Pos); err != nil {
			return err
		}
	}
	if err := checkTemplates(t, l.syntax()); err != nil {
		return err
	}
	return l.checkTemplateFile(t)
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
			ts, err := l.loadTaskFile(c, base, childInherit(t, in))
			return ts, fromRef(t.Pos, t.Action, err)
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

// suggestKey is "; did you mean X?" for the task keyword, module or action
// closest to a typo (whenn, becom, templat), or "".
func (l *loader) suggestKey(key string) string {
	best, bestD := "", 3 // at most two edits away
	try := func(c string) {
		if d := editDistance(key, c); d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	for c := range taskKeywords {
		try(c)
	}
	for c := range engineActions {
		try(c)
	}
	for _, c := range l.reg.Names() {
		try(c)
	}
	if best == "" || len(key) <= bestD {
		return ""
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
