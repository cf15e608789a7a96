package engine

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"gokube/modules"
)

var taskKeys = map[string]bool{"name": true, "when": true, "loop": true, "with_items": true, "loop_control": true,
	"register": true, "until": true, "retries": true, "delay": true, "changed_when": true, "failed_when": true,
	"ignore_errors": true, "notify": true, "tags": true, "become": true, "become_user": true, "run_once": true,
	"delegate_to": true, "no_log": true, "environment": true, "check_mode": true, "timeout": true, "vars": true,
	"args": true, "listen": true, "block": true, "rescue": true, "always": true}

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
	"meta": {Doc: "Engine directives: flush_handlers runs notified handlers now, end_play and end_host stop, clear_facts forgets gathered facts; the others are accepted and do nothing.",
		FreeForm: "_raw", Args: map[string]modules.Arg{"_raw": {Type: modules.String, Required: true,
			Choices: []string{"flush_handlers", "end_play", "end_host", "noop", "clear_facts", "refresh_inventory", "clear_host_errors", "reset_connection"},
			Doc:     "The directive (free form: `meta: flush_handlers`)."}}},
	"setup": {Doc: "Gathers facts (one round trip: addresses, OS, CPU, memory, hostname); it runs implicitly at play start unless gather_facts is off.",
		Args: map[string]modules.Arg{
			"gather_subset": {Type: modules.Any, Doc: "Accepted for Ansible playbooks; gokube gathers its one set of facts."},
			"filter":        {Type: modules.Any, Doc: "Accepted for Ansible playbooks; every fact is gathered."},
		}},
	"include_tasks": {Doc: "Runs the tasks of another file, loaded when the task is reached (the file name may be templated).",
		FreeForm: "file", Args: map[string]modules.Arg{
			"file":  {Type: modules.String, Required: true, Doc: "Task file, relative to the including file's directory (or the role's tasks/)."},
			"apply": {Type: modules.Map, Doc: "Accepted for Ansible playbooks; keywords are not applied to the included tasks."},
		}},
	"import_tasks": {Doc: "Inserts the tasks of another file when the playbook is loaded.",
		FreeForm: "file", Args: map[string]modules.Arg{"file": {Type: modules.String, Required: true, Doc: "Task file, relative to the importing file's directory (or the role's tasks/)."}}},
	"include_role": {Doc: "Runs a role's tasks here (import_role is the same).",
		Args: map[string]modules.Arg{
			"name":          {Type: modules.String, Required: true, Doc: "The role (roles/ beside the playbook, then the bundled roles)."},
			"tasks_from":    {Type: modules.String, Doc: "Task file of the role's tasks/ to run instead of main.yml.", Default: "main"},
			"defaults_from": {Type: modules.String, Doc: "Accepted for Ansible playbooks; the role's defaults/main.yml is used."},
			"vars_from":     {Type: modules.String, Doc: "Accepted for Ansible playbooks; the role's vars/main.yml is used."},
			"handlers_from": {Type: modules.String, Doc: "Accepted for Ansible playbooks; the role's handlers/main.yml is used."},
			"public":        {Type: modules.Bool, Doc: "Accepted for Ansible playbooks."},
			"apply":         {Type: modules.Map, Doc: "Accepted for Ansible playbooks; keywords are not applied to the role's tasks."},
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
				err = errAt(kp, "%s: %w", k.Value, err)
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
