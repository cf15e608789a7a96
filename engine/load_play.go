package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"gokube/internal/vault"
	"gokube/modules"
)

type loader struct {
	reg      *modules.Registry
	bundled  fs.FS
	pbDir    src
	roleMemo map[string]*Role
	stack    []string // role names being loaded (cycle detection)
	incStack []string // task files being included
	play     *Play
	vault    *vault.Keyring // handed to every src the loader makes
	// rolesPath: more role directories (ansible.cfg's roles_path).
	rolesPath []string
	syn       templateSyntax // made on first use, see syntax
}

// syntax is the loader's template checker: one function-name table for
// every task it loads.
func (l *loader) syntax() templateSyntax {
	if l.syn.names == nil {
		l.syn = newTemplateSyntax()
	}
	return l.syn
}

// LoadPlaybook parses a playbook and everything it imports, and validates
// every task's arguments. No host is contacted.
func LoadPlaybook(file string, reg *modules.Registry, bundled fs.FS) (*Playbook, error) {
	return LoadPlaybookRoles(file, reg, bundled, nil)
}

// LoadPlaybookRoles is LoadPlaybook with more directories to find roles in
// (ansible.cfg's roles_path), after roles/ beside the playbook.
func LoadPlaybookRoles(file string, reg *modules.Registry, bundled fs.FS, rolesPath []string) (*Playbook, error) {
	return loadPlaybook(file, reg, bundled, rolesPath, nil)
}

// LoadPlaybookVault is LoadPlaybookRoles with the run's vault passwords
// (--syntax-check and --list-tasks without an inventory).
func LoadPlaybookVault(file string, reg *modules.Registry, bundled fs.FS, rolesPath []string, kr *vault.Keyring) (*Playbook, error) {
	return loadPlaybook(file, reg, bundled, rolesPath, kr)
}

// loadPlaybook is LoadPlaybookRoles with the run's vault passwords.
func loadPlaybook(file string, reg *modules.Registry, bundled fs.FS, rolesPath []string, kr *vault.Keyring) (*Playbook, error) {
	if reg == nil {
		reg = modules.NewRegistry()
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	l := &loader{reg: reg, bundled: bundled, roleMemo: map[string]*Role{}, rolesPath: rolesPath, vault: kr}
	l.pbDir = src{path: filepath.Dir(abs), display: filepath.Dir(displayPath(abs)), vault: kr}
	pb := &Playbook{Path: abs, Dir: filepath.Dir(abs)}
	plays, err := l.loadPlaybookFile(src{path: abs, display: displayPath(abs), vault: kr}, nil)
	if err != nil {
		return nil, err
	}
	pb.Plays = plays
	return pb, nil
}

// fromRef places a file-level error (a missing or cyclic file, which has
// no line of its own) at the line that refers to the file.
func fromRef(p Pos, what string, err error) error {
	var le *LoadError
	if errors.As(err, &le) && le.Pos.Line == 0 {
		return errAt(p, "%s: %w", what, err)
	}
	return err
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
		return nil, errAt(Pos{s.where(), root.Line}, "a playbook is a list of plays")
	}
	// Every play is loaded, so one run reports all their errors.
	var plays []*Play
	var errs errList
	for _, n := range root.Content {
		p := Pos{s.where(), n.Line}
		if n.Kind != yaml.MappingNode {
			errs.add(errAt(p, "a play must be a mapping"))
			continue
		}
		if v := mapGet(n, "import_playbook"); v != nil {
			var ivars map[string]any
			for i := 0; i < len(n.Content); i += 2 {
				k := n.Content[i].Value
				switch k {
				case "import_playbook", "name":
				case "vars":
					if err := n.Content[i+1].Decode(&ivars); err != nil {
						return nil, errAt(Pos{s.where(), n.Content[i].Line}, "vars: %w", err)
					}
				default:
					return nil, errAt(Pos{s.where(), n.Content[i].Line}, "unknown key %q in import_playbook", k)
				}
			}
			merged := mergeMaps(vars, ivars)
			sub, err := l.loadPlaybookFile(s.dir().join(v.Value), merged)
			if errs.add(fromRef(Pos{s.where(), v.Line}, "import_playbook", err)) {
				continue
			}
			plays = append(plays, sub...)
			continue
		}
		pl, err := l.loadPlay(s, n, vars)
		if errs.add(err) {
			continue
		}
		plays = append(plays, pl)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return plays, nil
}

func (l *loader) loadPlay(s src, n *yaml.Node, ivars map[string]any) (*Play, error) {
	file := s.where()
	pl := &Play{Pos: Pos{file, n.Line}, Vars: mergeMaps(ivars), GatherFacts: true, Strategy: "linear",
		MaxFailPercentage: -1, Dir: s.dir()}
	l.play = pl
	d := &playDraft{pl: pl}
	var errs errList
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := Pos{file, k.Line}
		kw, ok := playKeywords[k.Value]
		if !ok {
			errs.add(errAt(p, "unknown key %q in play", k.Value))
			continue
		}
		errs.add(kw(d, v, p))
	}
	if pl.Hosts == "" {
		errs.add(errAt(pl.Pos, "play has no hosts"))
	}
	if pl.Name == "" {
		pl.Name = pl.Hosts
	}
	// The tasks are checked even when a play keyword was wrong.
	errs.add(l.playTasks(d, s))
	if err := errs.err(); err != nil {
		return nil, err
	}
	numberPlay(pl)
	if err := checkNotify(pl); err != nil {
		return nil, err
	}
	return pl, nil
}

// playTasks loads the play's sections into its run order: facts,
// pre_tasks, roles, tasks, post_tasks (a handler flush after each of the
// three groups), then the handlers (roles' first).
func (l *loader) playTasks(d *playDraft, s src) error {
	pl, file := d.pl, s.where()
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
	// Each section is loaded even when an earlier one had errors.
	var errs errList
	t, err := sect(d.pre, "pre_tasks")
	errs.add(err)
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	// roles
	if d.roles != nil {
		if d.roles.Kind != yaml.SequenceNode {
			errs.add(errAt(Pos{file, d.roles.Line}, "roles must be a list"))
		} else {
			seen := map[*Role]bool{}
			for _, rn := range d.roles.Content {
				rt, err := l.playRole(rn, s, inh, seen)
				errs.add(err)
				all = append(all, rt...)
			}
		}
	}
	t, err = sect(d.tasks, "tasks")
	errs.add(err)
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	t, err = sect(d.post, "post_tasks")
	errs.add(err)
	all = append(all, t...)
	all = append(all, flushTask(pl.Pos))
	pl.Tasks = all
	for _, r := range pl.Roles {
		pl.Handlers = append(pl.Handlers, r.Handlers...)
	}
	h, err := sect(d.hdl, "handlers")
	errs.add(err)
	pl.Handlers = append(pl.Handlers, h...)
	return errs.err()
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
