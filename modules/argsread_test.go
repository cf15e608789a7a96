package modules

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDeclaredArgumentsAreRead: every argument a module's Spec declares is
// read by code, so no key is accepted and then ignored. It reads the
// package's source: each key of an `Args: map[string]Arg{...}` literal must
// appear as a string literal outside every Args literal, in the module's
// own file or in the files its arguments are read from (readers).
func TestDeclaredArgumentsAreRead(t *testing.T) {
	// Files whose arguments are read by code in other files.
	readers := map[string][]string{
		"etcd.go": {"etcddiscovery.go", "etcdmembers.go"},
		"pki.go":  {"pkihttp.go"},
		"x509.go": {"pki.go"},
		// lineinfile and blockinfile write through copy's writeFile
		// (backup, validate); unarchive checks its checksum with get_url's
		// parser.
		"lineinfile.go": {"copy.go"},
		"unarchive.go":  {"geturl.go"},
	}
	// Arguments with exactly one allowed value: nothing to read, the value
	// is what gokube does (systemd manages system units only).
	oneChoice := map[string]string{"systemd.go": "scope"}
	// Arguments read by shared code for every module that declares them:
	// file attributes, the argument checker and the module runner.
	shared := []string{"argcheck.go", "argkind.go", "args.go", "core.go", "module.go", "registry.go", "mode.go", "hostfile.go"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	uses := map[string]map[string]bool{} // file -> string literals outside Args
	declared := map[string][]*ast.BasicLit{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		uses[f] = map[string]bool{}
		var inArgs []ast.Node
		ast.Inspect(af, func(n ast.Node) bool {
			if kv, ok := n.(*ast.KeyValueExpr); ok {
				if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Args" {
					if cl, ok := kv.Value.(*ast.CompositeLit); ok {
						inArgs = append(inArgs, cl)
						for _, e := range cl.Elts {
							if k, ok := e.(*ast.KeyValueExpr).Key.(*ast.BasicLit); ok {
								declared[f] = append(declared[f], k)
							}
						}
					}
				}
			}
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				for _, a := range inArgs {
					if bl.Pos() >= a.Pos() && bl.End() <= a.End() {
						return true
					}
				}
				if s, err := strconv.Unquote(bl.Value); err == nil {
					uses[f][s] = true
				}
			}
			return true
		})
	}
	if len(declared) < 15 {
		t.Fatalf("found the Args of only %d files: the test no longer reads the Specs", len(declared))
	}
	for f, keys := range declared {
		for _, k := range keys {
			name, _ := strconv.Unquote(k.Value)
			if oneChoice[f] == name {
				continue
			}
			if slices.ContainsFunc(append(append([]string{f}, readers[f]...), shared...), func(r string) bool { return uses[r][name] }) {
				continue
			}
			t.Errorf("%s: argument %q is declared but no code reads it", fset.Position(k.Pos()), name)
		}
	}
}
