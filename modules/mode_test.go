package modules

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// applySymbolic agrees with the real chmod on the control machine.
func TestSymbolicModeMatchesChmod(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		start uint32
		isDir bool
		sym   string
	}{
		{0o644, false, "u+x"},
		{0o644, false, "u=rw,g=r,o="},
		{0o777, false, "go-w"},
		{0o600, false, "a+r"},
		{0o640, false, "g=u"},
		{0o644, false, "a+X"},
		{0o744, false, "go+X"},
		{0o700, true, "go+X"},
		{0o755, false, "u+s,g+s"},
		{0o777, true, "o+t"},
		{0o4755, false, "u-s"},
		{0o644, false, "u=rwx,g=rx,o=rx"},
		{0o000, false, "u+rw-x+x"},
		{0o751, false, "o=g"},
		{0o644, false, "+x"},
	}
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprint(i))
		if c.isDir {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chmod", fmt.Sprintf("%04o", c.start), p).CombinedOutput(); err != nil {
			t.Fatalf("%s", out)
		}
		if out, err := exec.Command("chmod", c.sym, p).CombinedOutput(); err != nil {
			t.Fatalf("chmod %s: %s", c.sym, out)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		real := uint32(fi.Mode().Perm())
		if fi.Mode()&os.ModeSetuid != 0 {
			real |= 0o4000
		}
		if fi.Mode()&os.ModeSetgid != 0 {
			real |= 0o2000
		}
		if fi.Mode()&os.ModeSticky != 0 {
			real |= 0o1000
		}
		got, err := applySymbolic(c.start, c.isDir, c.sym)
		if err != nil || got != real {
			t.Errorf("%04o %s (dir %v): got %04o %v, chmod gives %04o", c.start, c.sym, c.isDir, got, err, real)
		}
	}
	for _, bad := range []string{"u", "u+q", "z+x", "u+x,", ""} {
		if _, err := applySymbolic(0o644, false, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzApplySymbolic(f *testing.F) {
	for _, s := range []string{"u+x", "a=rwx", "go-w,u+s", "o=g", "+t"} {
		f.Add(uint32(0o644), s)
	}
	f.Fuzz(func(t *testing.T, start uint32, sym string) {
		m, err := applySymbolic(start, false, sym)
		if err == nil && m > 0o7777 {
			t.Fatalf("%q: mode %o out of range", sym, m)
		}
	})
}
