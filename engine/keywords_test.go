package engine

import (
	"bufio"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// kwSample writes one keyword: base is a playbook without it, with the
// same playbook with it. Parsing both and comparing them shows which
// fields the keyword sets.
type kwSample struct{ base, with string }

// Playbook pieces for the samples. The roles r and r2 and the vars file
// v.yml exist in the test's directory.
const (
	kwPlay    = "- hosts: all\n"
	kwHandler = "  handlers:\n    - {name: h, command: 'true'}\n"
)

func playSample(extra string) kwSample {
	return kwSample{kwPlay, kwPlay + "  " + extra + "\n"}
}

func taskSample(extra string) kwSample {
	return taskSample2("", extra)
}

// taskSample2: both sides carry common; with also carries extra.
func taskSample2(common, extra string) kwSample {
	task := kwPlay + kwHandler + "  tasks:\n    - command: 'true'\n"
	if common != "" {
		task += "      " + common + "\n"
	}
	return kwSample{task, task + "      " + extra + "\n"}
}

func blockSample(base, with string) kwSample {
	p := kwPlay + "  tasks:\n    - "
	return kwSample{p + base + "\n", p + with + "\n"}
}

func roleSample(base, extra string) kwSample {
	p := kwPlay + "  roles:\n    - " + base + "\n"
	return kwSample{p, p + "      " + extra + "\n"}
}

var playKeywordSamples = map[string]kwSample{
	"hosts":               {kwPlay, "- hosts: [node-1]\n"},
	"name":                playSample("name: p"),
	"vars":                playSample("vars: {a: 1}"),
	"vars_files":          playSample("vars_files: [v.yml]"),
	"roles":               playSample("roles: [r]"),
	"pre_tasks":           playSample("pre_tasks: [{command: 'true'}]"),
	"tasks":               playSample("tasks: [{command: 'true'}]"),
	"post_tasks":          playSample("post_tasks: [{command: 'true'}]"),
	"handlers":            playSample("handlers: [{name: h, command: 'true'}]"),
	"become":              playSample("become: true"),
	"become_user":         playSample("become_user: u"),
	"gather_facts":        playSample("gather_facts: false"),
	"serial":              playSample("serial: 1"),
	"strategy":            playSample("strategy: free"),
	"any_errors_fatal":    playSample("any_errors_fatal: true"),
	"max_fail_percentage": playSample("max_fail_percentage: 10"),
	"tags":                playSample("tags: [x]"),
	"environment":         playSample("environment: {A: b}"),
}

var taskKeywordSamples = map[string]kwSample{
	"name":          taskSample("name: t"),
	"when":          taskSample("when: .x"),
	"loop":          taskSample("loop: [1, 2]"),
	"with_items":    taskSample("with_items: [1, 2]"),
	"loop_control":  taskSample2("loop: [1]", "loop_control: {loop_var: x, label: y, index_var: i}"),
	"register":      taskSample("register: r"),
	"until":         taskSample("until: .r"),
	"retries":       taskSample2("until: .r", "retries: 2"),
	"delay":         taskSample2("until: .r", "delay: 1"),
	"changed_when":  taskSample("changed_when: false"),
	"failed_when":   taskSample("failed_when: false"),
	"ignore_errors": taskSample("ignore_errors: true"),
	"notify":        taskSample("notify: h"),
	"listen":        taskSample("listen: topic"),
	"tags":          taskSample("tags: [x]"),
	"become":        taskSample("become: true"),
	"become_user":   taskSample("become_user: u"),
	"run_once":      taskSample("run_once: true"),
	"delegate_to":   taskSample("delegate_to: node-1"),
	"no_log":        taskSample("no_log: true"),
	"environment":   taskSample("environment: {A: b}"),
	"check_mode":    taskSample("check_mode: true"),
	"timeout":       taskSample("timeout: 5"),
	"vars":          taskSample("vars: {a: 1}"),
	"args":          taskSample("args: {creates: /x}"),
	"block":         blockSample("block: []", "block: [{command: 'true'}]"),
	"rescue":        blockSample("block: [{command: 'true'}]", "{block: [{command: 'true'}], rescue: [{command: 'true'}]}"),
	"always":        blockSample("block: [{command: 'true'}]", "{block: [{command: 'true'}], always: [{command: 'true'}]}"),
}

var roleEntryKeywordSamples = map[string]kwSample{
	"role":        {kwPlay + "  roles: [{name: r}]\n", kwPlay + "  roles: [{role: r2}]\n"},
	"name":        {kwPlay + "  roles: [{role: r}]\n", kwPlay + "  roles: [{name: r2}]\n"},
	"tags":        roleSample("role: r", "tags: [x]"),
	"when":        roleSample("role: r", "when: .x"),
	"become":      roleSample("role: r", "become: true"),
	"become_user": roleSample("role: r", "become_user: u"),
	"vars":        roleSample("role: r", "vars: {a: 1}"),
	"no_log":      roleSample("role: r", "no_log: true"),
}

// loadTimeFields take effect while the playbook loads, so only the
// loader reads them.
var loadTimeFields = map[string]string{
	"Play.GatherFacts": "the loader adds the facts task",
}

// TestKeywordTables walks every keyword table: each keyword has a sample,
// parsing the sample changes at least one field, and every field it
// changes is read by code outside the loader (the executor, output, list),
// so no keyword is accepted and then ignored.
func TestKeywordTables(t *testing.T) {
	reads := fieldReads(t)
	tables := []struct {
		name    string
		keys    []string
		samples map[string]kwSample
	}{
		{"play", slices.Sorted(mapKeys(playKeywords)), playKeywordSamples},
		{"task", slices.Sorted(mapKeys(taskKeywords)), taskKeywordSamples},
		{"role entry", slices.Sorted(mapKeys(roleEntryKeywords)), roleEntryKeywordSamples},
	}
	for _, tb := range tables {
		for k := range tb.samples {
			if !slices.Contains(tb.keys, k) {
				t.Errorf("%s sample %q is not in the %s keyword table", tb.name, k, tb.name)
			}
		}
		for _, k := range tb.keys {
			t.Run(tb.name+"/"+k, func(t *testing.T) {
				s, ok := tb.samples[k]
				if !ok {
					t.Fatalf("keyword %q has no sample in keywords_test.go", k)
				}
				fields := sampleDiff(t, s)
				if len(fields) == 0 {
					t.Fatalf("keyword %q changes nothing in the parsed playbook", k)
				}
				for _, f := range fields {
					if _, ok := loadTimeFields[f]; ok {
						continue
					}
					if !reads[f] {
						t.Errorf("keyword %q sets %s, which nothing outside the loader reads", k, f)
					}
				}
			})
		}
	}
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sampleDiff loads both sides of s and returns the fields ("Task.When")
// whose values differ.
func sampleDiff(t *testing.T, s kwSample) []string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"v.yml":                   "a: 1\n",
		"roles/r/tasks/main.yml":  "- command: 'true'\n",
		"roles/r2/tasks/main.yml": "- command: 'true'\n",
		"base.yml":                s.base,
		"with.yml":                s.with,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := testRegistry()
	base, err := LoadPlaybook(filepath.Join(dir, "base.yml"), reg, nil)
	if err != nil {
		t.Fatalf("base:\n%s%v", s.base, err)
	}
	with, err := LoadPlaybook(filepath.Join(dir, "with.yml"), reg, nil)
	if err != nil {
		t.Fatalf("with:\n%s%v", s.with, err)
	}
	out := map[string]bool{}
	diffValues(reflect.ValueOf(base.Plays), reflect.ValueOf(with.Plays), "Playbook.Plays", out, map[[2]uintptr]bool{})
	return slices.Sorted(mapKeys(out))
}

var (
	posType = reflect.TypeFor[Pos]()
	srcType = reflect.TypeFor[src]()
	ordType = reflect.TypeFor[ord]()
)

// diffValues records in out the innermost struct fields where a and b
// differ. Positions (they shift with the sample's lines) are left out.
func diffValues(a, b reflect.Value, field string, out map[string]bool, seen map[[2]uintptr]bool) {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				out[field] = true
			}
			return
		}
		k := [2]uintptr{a.Pointer(), b.Pointer()}
		if seen[k] {
			return
		}
		seen[k] = true
		diffValues(a.Elem(), b.Elem(), field, out, seen)
	case reflect.Struct:
		if a.Type() == posType || a.Type() == srcType || a.Type() == ordType {
			return
		}
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			if !f.IsExported() || f.Name == "ArgPos" {
				continue
			}
			diffValues(a.Field(i), b.Field(i), a.Type().Name()+"."+f.Name, out, seen)
		}
	case reflect.Slice:
		if a.Len() != b.Len() {
			out[field] = true
			return
		}
		for i := 0; i < a.Len(); i++ {
			diffValues(a.Index(i), b.Index(i), field, out, seen)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			out[field] = true
		}
	}
}

// fieldReads type-checks the package and returns the struct fields
// ("Task.When") that some expression outside the loader (keywords.go,
// load_*.go) reads. Assignments to a field are not reads.
func fieldReads(t *testing.T) map[string]bool {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "list", "-deps", "-export", "-f", "{{.ImportPath}}={{.Export}}", ".")
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(outb)))
	for sc.Scan() {
		if p, f, ok := strings.Cut(sc.Text(), "="); ok && f != "" {
			exports[p] = f
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		return os.Open(exports[path])
	})
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, n := range names {
		if ok, err := build.Default.MatchFile(".", n); strings.HasSuffix(n, "_test.go") || err != nil || !ok {
			continue // tests, and files this platform's build leaves out
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
	if _, err := (&types.Config{Importer: imp}).Check("gokube/engine", fset, files, info); err != nil {
		t.Fatalf("type-checking the engine: %v", err)
	}
	reads := map[string]bool{}
	for _, f := range files {
		name := fset.Position(f.Pos()).Filename
		if name == "keywords.go" || strings.HasPrefix(name, "load_") {
			continue
		}
		written := map[*ast.SelectorExpr]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if as, ok := n.(*ast.AssignStmt); ok {
				for _, l := range as.Lhs {
					if se, ok := l.(*ast.SelectorExpr); ok {
						written[se] = true
					}
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			se, ok := n.(*ast.SelectorExpr)
			if !ok || written[se] {
				return true
			}
			sel := info.Selections[se]
			if sel == nil || sel.Kind() != types.FieldVal {
				return true
			}
			recv := sel.Recv()
			if p, ok := recv.(*types.Pointer); ok {
				recv = p.Elem()
			}
			if named, ok := recv.(*types.Named); ok {
				reads[named.Obj().Name()+"."+sel.Obj().Name()] = true
			}
			return true
		})
	}
	return reads
}
