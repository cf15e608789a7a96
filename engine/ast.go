package engine

import (
	"fmt"
	"time"

	"gokube/modules"
)

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

// Cond is one condition expression with its place.
type Cond struct {
	Expr string
	Pos  Pos
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
