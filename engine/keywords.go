package engine

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The keyword tables: one map per place a keyword can appear (a play, a
// task or block, a roles: entry). A key is accepted only if it is in its
// table (or, in a task, names a module or engine action); every parser
// stores the value where the executor reads it, and TestKeywordTables
// fails when a keyword's parsed field is read nowhere outside this file.
// To add a keyword: add a parser here, read its field where it takes
// effect, and give the test a sample (see CONTRIBUTING.md).

// playDraft is a play while its keywords are parsed; the task sections
// are kept as nodes and loaded after every key is known (a section's
// tasks inherit the play's tags and environment whatever the key order).
type playDraft struct {
	pl                           *Play
	roles, pre, tasks, post, hdl *yaml.Node
}

type playKeyword func(d *playDraft, v *yaml.Node, p Pos) error

var playKeywords = map[string]playKeyword{
	"hosts": func(d *playDraft, v *yaml.Node, p Pos) error {
		if v.Kind != yaml.SequenceNode {
			d.pl.Hosts = v.Value
			return nil
		}
		hs, err := strList(v, p, "hosts")
		d.pl.Hosts = strings.Join(hs, ":")
		return err
	},
	"name": func(d *playDraft, v *yaml.Node, p Pos) error { d.pl.Name = v.Value; return nil },
	"vars": func(d *playDraft, v *yaml.Node, p Pos) error {
		m, err := decodeMap(v, p, "vars")
		for k, x := range m {
			d.pl.Vars[k] = x
		}
		return err
	},
	"vars_files": func(d *playDraft, v *yaml.Node, p Pos) error {
		files, err := strList(v, p, "vars_files")
		for _, f := range files {
			m, err := loadVarsFile(d.pl.Dir.join(f), p)
			if err != nil {
				return fromRef(p, "vars_files", err)
			}
			d.pl.VarsFiles = append(d.pl.VarsFiles, m)
		}
		return err
	},
	"roles":      func(d *playDraft, v *yaml.Node, p Pos) error { d.roles = v; return nil },
	"pre_tasks":  func(d *playDraft, v *yaml.Node, p Pos) error { d.pre = v; return nil },
	"tasks":      func(d *playDraft, v *yaml.Node, p Pos) error { d.tasks = v; return nil },
	"post_tasks": func(d *playDraft, v *yaml.Node, p Pos) error { d.post = v; return nil },
	"handlers":   func(d *playDraft, v *yaml.Node, p Pos) error { d.hdl = v; return nil },
	"become": func(d *playDraft, v *yaml.Node, p Pos) error {
		b, err := boolNode(v, p, "become")
		d.pl.Become = &b
		return err
	},
	"become_user": func(d *playDraft, v *yaml.Node, p Pos) error { d.pl.BecomeUser = v.Value; return nil },
	"gather_facts": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.GatherFacts, err = boolNode(v, p, "gather_facts")
		return err
	},
	"serial": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.Serial, err = strList(v, p, "serial")
		for _, s := range d.pl.Serial {
			if _, e := parseSerial(s, 10); e != nil {
				err = errAt(p, "serial: %w", e)
			}
		}
		return err
	},
	"strategy": func(d *playDraft, v *yaml.Node, p Pos) error {
		d.pl.Strategy = v.Value
		if v.Value != "linear" && v.Value != "free" {
			return errAt(p, "strategy: %q is not linear or free", v.Value)
		}
		return nil
	},
	"any_errors_fatal": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.AnyErrorsFatal, err = boolNode(v, p, "any_errors_fatal")
		return err
	},
	"max_fail_percentage": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.MaxFailPercentage, err = strconv.ParseFloat(strings.TrimSuffix(v.Value, "%"), 64)
		if err != nil {
			return errAt(p, "max_fail_percentage: %w", err)
		}
		return nil
	},
	"tags": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.Tags, err = strList(v, p, "tags")
		return err
	},
	"environment": func(d *playDraft, v *yaml.Node, p Pos) (err error) {
		d.pl.Environment, err = decodeMap(v, p, "environment")
		return err
	},
}

// taskDraft is a task (or block, or handler) while its keywords are
// parsed. What the task inherits from its blocks, includes and role is
// merged in after (its own settings win), so keywords that combine with
// inherited ones (tags, environment) are kept apart until then.
type taskDraft struct {
	t                     *Task
	file                  string
	tags                  []string       // the task's own tags
	env                   map[string]any // the task's own environment
	args                  *yaml.Node     // args: (merged into the action's arguments)
	block, rescue, always *yaml.Node
}

// taskKeyword parses the value v of keyword key (at p) into d.
type taskKeyword func(d *taskDraft, key string, v *yaml.Node, p Pos) error

var taskKeywords = map[string]taskKeyword{
	"name": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.t.Name = v.Value; return nil },
	"when": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) (err error) {
		d.t.When, err = condList(v, d.file, "when")
		return err
	},
	"loop":       parseLoop,
	"with_items": parseLoop,
	"loop_control": func(d *taskDraft, _ string, v *yaml.Node, p Pos) error {
		if v.Kind != yaml.MappingNode {
			return errAt(p, "loop_control must be a mapping")
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			lk, lv := v.Content[j], v.Content[j+1]
			switch lk.Value {
			case "loop_var":
				d.t.LoopVar = lv.Value
			case "label":
				d.t.Label = lv.Value
			case "index_var":
				d.t.IndexVar = lv.Value
			case "extended":
				// ansible_loop is always set (extended is always on), so
				// extended: true is honoured; false only hides nothing.
			case "pause":
				return errAt(Pos{d.file, lk.Line}, "loop_control: pause is not supported (gokube does not sleep between items); use a separate pause task or until/delay")
			default:
				return errAt(Pos{d.file, lk.Line}, "unknown key %q in loop_control", lk.Value)
			}
		}
		return nil
	},
	"register": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.t.Register = v.Value; return nil },
	"until": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) (err error) {
		d.t.Until, err = condList(v, d.file, "until")
		return err
	},
	"retries": func(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
		if err := intOrTemplate(v, p, key); err != nil {
			return err
		}
		d.t.Retries, err = decodeAny(v)
		return err
	},
	"delay": func(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
		if err := intOrTemplate(v, p, key); err != nil {
			return err
		}
		d.t.Delay, err = decodeAny(v)
		return err
	},
	"changed_when": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) (err error) {
		d.t.Changed, err = condList(v, d.file, "changed_when")
		d.t.HasChg = true
		return err
	},
	"failed_when": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) (err error) {
		d.t.Failed, err = condList(v, d.file, "failed_when")
		d.t.HasFail = true
		return err
	},
	"ignore_errors": func(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
		d.t.Ignore, err = boolNode(v, p, key)
		return err
	},
	"notify": func(d *taskDraft, _ string, v *yaml.Node, p Pos) (err error) {
		d.t.Notify, err = strList(v, p, "notify")
		return err
	},
	"listen": func(d *taskDraft, _ string, v *yaml.Node, p Pos) (err error) {
		d.t.Listen, err = strList(v, p, "listen")
		return err
	},
	"tags": func(d *taskDraft, _ string, v *yaml.Node, p Pos) (err error) {
		d.tags, err = strList(v, p, "tags")
		return err
	},
	"become": func(d *taskDraft, key string, v *yaml.Node, p Pos) error {
		b, err := boolNode(v, p, key)
		d.t.Become = &b
		return err
	},
	"become_user": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error {
		u := v.Value
		d.t.BUser = &u
		return nil
	},
	"run_once": func(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
		d.t.RunOnce, err = boolNode(v, p, key)
		return err
	},
	"delegate_to": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.t.Delegate = v.Value; return nil },
	"no_log": func(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
		d.t.NoLog, err = boolNode(v, p, key)
		return err
	},
	"environment": func(d *taskDraft, _ string, v *yaml.Node, p Pos) (err error) {
		d.env, err = decodeMap(v, p, "environment")
		return err
	},
	"check_mode": func(d *taskDraft, key string, v *yaml.Node, p Pos) error {
		b, err := boolNode(v, p, key)
		d.t.Check = &b
		return err
	},
	"timeout": func(d *taskDraft, _ string, v *yaml.Node, p Pos) error {
		secs, err := strconv.Atoi(v.Value)
		if err != nil {
			return errAt(p, "timeout: want seconds, got %q", v.Value)
		}
		d.t.Timeout = time.Duration(secs) * time.Second
		return nil
	},
	"vars": func(d *taskDraft, _ string, v *yaml.Node, p Pos) (err error) {
		d.t.Vars, err = decodeMap(v, p, "vars")
		return err
	},
	"args":   func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.args = v; return nil },
	"block":  func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.block = v; return nil },
	"rescue": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.rescue = v; return nil },
	"always": func(d *taskDraft, _ string, v *yaml.Node, _ Pos) error { d.always = v; return nil },
}

// intOrTemplate refuses a literal that is not a non-negative integer; a
// template is checked when it is rendered.
func intOrTemplate(v *yaml.Node, p Pos, key string) error {
	if v.Kind == yaml.ScalarNode && strings.Contains(v.Value, "{{") {
		return nil
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v.Value)); v.Kind != yaml.ScalarNode || err != nil || n < 0 {
		return errAt(p, "%s: want a whole number of %s, got %q", key, map[string]string{"retries": "attempts", "delay": "seconds"}[key], v.Value)
	}
	return nil
}

// parseLoop is loop and with_items (which flattens one level, as Ansible's).
func parseLoop(d *taskDraft, key string, v *yaml.Node, p Pos) (err error) {
	t := d.t
	if t.HasLoop {
		return errAt(p, "task has both loop and with_items")
	}
	t.HasLoop, t.LoopPos = true, p
	switch {
	case v.Kind == yaml.MappingNode:
		return errAt(p, "%s: want a list or a template (\"{{ .list }}\"), got a mapping (loop over a dict with \"{{ dict2items .d }}\")", key)
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str" && !strings.Contains(v.Value, "{{"):
		return errAt(p, "%s: want a list or a template, got the string %q (a variable is \"{{ .%s }}\")", key, v.Value, v.Value)
	case v.Kind == yaml.ScalarNode && v.Tag != "!!str":
		return errAt(p, "%s: want a list or a template, got %q", key, v.Value)
	}
	t.Loop, err = decodeAny(v)
	if key == "with_items" {
		if lst, ok := t.Loop.([]any); ok {
			t.Loop = flatten1(lst)
		}
	}
	return err
}

// roleEntry is a `roles:` entry while its keys are parsed: the role's
// name, what its tasks inherit, and its parameters (any key not in
// roleEntryKeywords is a parameter, as in Ansible).
type roleEntry struct {
	name   string
	in     inherit
	params map[string]any
	file   string
}

type roleEntryKeyword func(e *roleEntry, v *yaml.Node, p Pos) error

var roleEntryKeywords = map[string]roleEntryKeyword{
	"role": roleEntryName,
	"name": roleEntryName,
	"tags": func(e *roleEntry, v *yaml.Node, p Pos) error {
		t, err := strList(v, p, "tags")
		e.in = e.in.addTags(t)
		return err
	},
	"when": func(e *roleEntry, v *yaml.Node, p Pos) error {
		c, err := condList(v, e.file, "when")
		e.in.when = append(append([]Cond(nil), e.in.when...), c...)
		return err
	},
	"become": func(e *roleEntry, v *yaml.Node, p Pos) error {
		b, err := boolNode(v, p, "become")
		e.in.become = &b
		return err
	},
	"become_user": func(e *roleEntry, v *yaml.Node, p Pos) error {
		u := v.Value
		e.in.buser = &u
		return nil
	},
	// A keyword, as in Ansible, not a role parameter: every task of the
	// role is no_log.
	"no_log": func(e *roleEntry, v *yaml.Node, p Pos) error {
		b, err := boolNode(v, p, "no_log")
		e.in.noLog = e.in.noLog || b
		return err
	},
	"vars": func(e *roleEntry, v *yaml.Node, p Pos) error {
		m, err := decodeMap(v, p, "vars")
		for k, x := range m {
			e.params[k] = x
		}
		return err
	},
}

func roleEntryName(e *roleEntry, v *yaml.Node, p Pos) error { e.name = v.Value; return nil }
