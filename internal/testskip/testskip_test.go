package testskip

import "testing"

// fakeT records what Skip did instead of ending a real test.
type fakeT struct {
	testing.TB
	skipped, failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skip(args ...any)                  { f.skipped = args[0].(string) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = format }

func TestSkip(t *testing.T) {
	t.Setenv("GOKUBE_INTEGRATION", "")
	f := &fakeT{}
	Skip(f, "curl %s", "not installed")
	if f.skipped != "curl not installed" || f.failed != "" {
		t.Fatalf("without the promise: %+v", f)
	}
	t.Setenv("GOKUBE_INTEGRATION", "1")
	f = &fakeT{}
	Skip(f, "curl %s", "not installed")
	if f.skipped != "" || f.failed == "" {
		t.Fatalf("under make test: %+v", f)
	}
}
