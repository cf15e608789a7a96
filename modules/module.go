// Package modules holds gokube's Go-native modules. A module runs on the
// control machine and talks to the host through a connection.Conn; nothing
// is shipped to the host. Modules are registered explicitly (see Registry).
package modules

import (
	"context"
	"fmt"
	"io/fs"
	"sort"

	"gokube/connection"
)

// ArgType is the declared type of a module argument.
type ArgType int

const (
	String ArgType = iota
	Bool
	Int
	List // list of scalars
	Map
	Any
)

// Arg declares one argument of a module.
type Arg struct {
	Type     ArgType
	Required bool
	Choices  []string // allowed values for a String, or each element of a List
	Aliases  []string
	// Kind is a rule on the value beyond its type (Mode, Regexp, Port,
	// URL...), checked on literal values at load and rendered ones at run.
	Kind Kind
	// Doc says what the argument does; `gokube doc` prints it, and a test
	// fails for an argument without one, so the docs cannot lag the code.
	Doc string
	// Default is the value used when the argument is absent, as written
	// in a playbook ("" when there is none or it depends on others).
	Default string
}

// Spec declares a module's arguments. The engine validates every task's
// arguments against it before contacting any host.
type Spec struct {
	Args map[string]Arg
	// FreeForm names the argument that receives a free-form string
	// (command: "ls -l" puts "ls -l" into args["cmd"]).
	FreeForm string
	// RequireOneOf lists groups of which at least one must be given.
	RequireOneOf [][]string
	// Exclusive lists groups of which at most one may be given (copy's
	// src and content).
	Exclusive [][]string
	// RequiredIf lists arguments that another argument's value needs
	// (file's state: link needs src).
	RequiredIf []Requirement
	// Doc is the module's one-paragraph description for `gokube doc`.
	Doc string
	// Returns describes the keys of Result.Data (what `register` stores
	// besides changed/failed/msg).
	Returns map[string]string
}

// Requirement says that when argument If has the value Is, the arguments
// Need must be given. A templated If is decided when it is rendered.
type Requirement struct {
	If, Is string
	Need   []string
}

// Env is everything a module may use for one host and one task.
type Env struct {
	Conn  connection.Conn
	Host  string // inventory name
	Check bool   // check mode: Conn is a dry connection, predict only
	Diff  bool   // produce a unified diff where it makes sense

	Become     bool
	BecomeUser string
	// Environment is exported for commands the module runs.
	Environment map[string]string

	// Files is the search path for src= of copy, template, unarchive
	// (role files/ or templates/ first, then the playbook dir).
	Files []fs.FS
	// Render renders a Go template text with the host's variables; name is
	// used in error messages (file:line).
	Render func(name, text string) (string, error)
	// Vars returns the host's variables (for debug var=, assert).
	Vars map[string]any
	// Probe holds the output of this task's Probe script if the executor
	// already ran it in a batch; nil means the module must look itself.
	Probe []byte
	// ArtifactDir is the control machine's artifact cache.
	ArtifactDir string
}

// Result is what a module did. Data is what `register` stores, merged with
// changed/failed/msg by the engine.
type Result struct {
	Changed bool
	Failed  bool
	Skipped bool
	Msg     string
	Diff    string
	Data    map[string]any
	// Touched lists the paths a change created, replaced (renamed over)
	// or removed, when the module knows that is all it changed; nil means
	// it may have changed anything. In-place edits of an existing inode
	// (chmod, chown, touch) are not listed: a hard link elsewhere shares
	// them. The executor keeps the batched probes of unrelated paths
	// across such a change instead of probing them again.
	Touched []string
	// NewDirs lists the directories among Touched that the change made
	// where nothing was, and left empty (mkdir): every path below one
	// was absent before the change and still is, so the batched probes of
	// paths below them stay true too. A directory a cold run creates for
	// the files that follow then costs no probe batch.
	NewDirs []string
	// AccountsOnly says the change edited only the account databases
	// (groupadd, useradd without a home): no path changed but those in
	// Touched, only an owner's or group's name may now read differently.
	// The executor keeps the batched path probes that name no owner (a
	// path that is absent) and systemd's (ScopedProber), and forgets the
	// rest but what Added keeps.
	AccountsOnly bool
	// Added lists the accounts an AccountsOnly change added, as "user
	// NAME" and "group NAME", when adding them is all it did (groupadd,
	// useradd without a home, which may make the user's own group too):
	// no existing uid or gid got another name, so the path probes whose
	// owner and group have names stay true, and so do account probes of
	// other accounts that were absent. nil when names may have changed.
	Added []string
	// Reprobe says the task changed what probes read without a change to
	// report (a daemon-reload, no change in Ansible either): the executor
	// drops its cached probes and the daemon-reload answers it kept.
	Reprobe bool
}

// Module is one task action.
type Module interface {
	Spec() Spec
	Run(ctx context.Context, env *Env, args map[string]any) (*Result, error)
}

// Prober is an optional interface: a module that can tell, from a
// read-only shell script's output, whether it must act. The executor runs
// the probes of many upcoming tasks in one round trip and hands each module
// its slice of the output in Env.Probe.
type Prober interface {
	// Probe returns a read-only shell script; ok=false when the module
	// cannot probe these args ahead of time.
	Probe(args map[string]any) (script string, ok bool)
}

// PathProber is a Prober whose probe script is made only of file probes:
// its output depends only on the state of the paths the script declares
// (ProbePaths), on the directories above them and on the names of their
// owner and group. The executor keeps such a probe's batched answer across
// a change whose Touched paths are unrelated to them.
type PathProber interface {
	Prober
	ProbesOnlyPaths(args map[string]any) bool
}

// ScopedProber is a Prober that says what its answer depends on, so
// that the executor keeps the answer across a change that cannot alter it
// (PathProber says it for paths).
type ScopedProber interface {
	Prober
	ProbeScope(args map[string]any) ProbeScope
}

// ProbeScope is what a probe's answer depends on; the zero value means
// anything.
type ProbeScope struct {
	// Systemd: the answer is what systemd reports about units and its
	// last reload, which no change of the account databases alters.
	Systemd bool
	// Account: the answer is this account's entry alone ("user NAME",
	// "group NAME", as Result.Added names them); one that says the
	// account is absent (AccountAbsent) holds until that account is
	// added.
	Account string
}

// Pipelinable is a module whose Result, when the one change request it
// sends succeeds (exit 0), does not depend on what that request printed:
// the executor may send the request behind those of the tasks before it
// without waiting for their answers (connection.Pipeliner), and answer
// the module with success at once. Where the module would read the host
// or send a second request, the executor runs it the usual way instead.
type Pipelinable interface {
	Module
	Pipelinable()
}

// ChangeLast is a module whose change request, when it sends one, is the
// last request it sends, and whose result the executor cannot foresee (a
// command): the executor may send the probe batch of the tasks after it
// in the same write, behind that request (the session runs them in
// order), for those tasks' turns.
type ChangeLast interface {
	Module
	ChangeLast()
}

// OptionalProber is a Prober whose module can decide in the request it
// sends anyway (command's creates=/removes= guard): a batch's answer saves
// that request, but on a cache miss the executor must not start a batch
// for it alone, which would add a round trip whenever the answer is "run".
type OptionalProber interface {
	Prober
	ProbeOnlyInBatch() bool
}

// Registry maps module names to modules. It is built explicitly by
// NewRegistry (no init() registration, no package state).
type Registry struct {
	m map[string]Module
	// also holds, per name, the other names registered in the same call
	// (systemd, systemd_service), for `gokube doc`.
	also map[string][]string
}

// Register adds a module under one or more names.
func (r *Registry) Register(m Module, names ...string) {
	if r.m == nil {
		r.m = map[string]Module{}
		r.also = map[string][]string{}
	}
	for _, n := range names {
		r.m[n] = m
		for _, o := range names {
			if o != n {
				r.also[n] = append(r.also[n], o)
			}
		}
	}
}

// Also returns the other names the module called name is registered under.
func (r *Registry) Also(name string) []string {
	return append([]string(nil), r.also[name]...)
}

// Lookup returns the module of that name.
func (r *Registry) Lookup(name string) (Module, bool) {
	m, ok := r.m[name]
	return m, ok
}

// Names lists registered names, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ArgError is an invalid module argument, found when the engine loads the
// task (CheckArgs) or when the module runs; the engine adds file and line.
// Key is the argument as written in the task ("" for the task as a whole).
// Phrase, when set, is the whole message after "module: " (CheckArgs
// words some faults around the key: `missing required argument "x"`).
type ArgError struct {
	Module string
	Key    string
	Msg    string
	Phrase string
}

func (e *ArgError) Error() string {
	if e.Phrase != "" {
		return e.Module + ": " + e.Phrase
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.Module, e.Msg)
	}
	return fmt.Sprintf("%s: argument %q: %s", e.Module, e.Key, e.Msg)
}
