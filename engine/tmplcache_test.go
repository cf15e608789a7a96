package engine

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestTmplCacheSets: texts share a template set without meeting in it. Two
// texts that define the same name each call their own; a text cannot call
// a name only another text defined; executions one after another use one
// set (its function table built once), executions at once one set each.
func TestTmplCacheSets(t *testing.T) {
	c := newTmplCache(baseFuncs())
	run := func(text string, d map[string]any) (string, error) {
		e := c.entry(text)
		if e.err != nil {
			return "", e.err
		}
		out, _, err := c.exec(e, nil, d)
		return out, err
	}
	for i := 0; i < 3; i++ {
		for _, w := range []string{"A", "B"} {
			got, err := run(fmt.Sprintf(`{{ define "x" }}%s{{ end }}[{{ template "x" }}]`, w), nil)
			if err != nil || got != "["+w+"]" {
				t.Errorf("define %s: %q, %v", w, got, err)
			}
		}
	}
	if got, err := run(`{{ template "x" }}`, nil); err == nil {
		t.Errorf("a text called another text's define: %q", got)
	}
	for i := 0; i < 50; i++ {
		if got, err := run(fmt.Sprintf("{{ .v }}-%d", i), map[string]any{"v": "x"}); err != nil || got != fmt.Sprintf("x-%d", i) {
			t.Fatalf("text %d: %q, %v", i, got, err)
		}
	}
	if n := len(c.free); n != 1 {
		t.Errorf("%d template sets after executions one after another, want 1", n)
	}
	// Executions at once borrow a set each; all come back.
	var held []*tmplInst
	for i := 0; i < 3; i++ {
		held = append(held, c.borrow())
	}
	for _, inst := range held {
		c.free = append(c.free, inst)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := run(`{{ .v }}`, map[string]any{"v": i}); err != nil || got != fmt.Sprint(i) {
				t.Errorf("concurrent %d: %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	if n := len(c.free); n < 3 || n > 8 {
		t.Errorf("%d template sets after 8 concurrent executions with 3 free, want 3 to 8", n)
	}
	// An execution error keeps the text's own position and expression.
	_, err := run("line one\n{{ .nope }}", map[string]any{})
	var te *TemplateError
	if !errors.As(tmplError(Pos{File: "f.yml", Line: 10}, "h", err), &te) || te.Pos.Line != 11 || te.Expr != ".nope" || !te.Missing {
		t.Errorf("error: %#v", te)
	}
}
