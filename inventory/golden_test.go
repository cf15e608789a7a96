package inventory

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./inventory -update to create it)", err)
	}
	if string(want) == string(got) {
		return
	}
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Errorf("%s:%d differs (run with -update if intended):\nwant %q\ngot  %q", path, i+1, w, g)
			return
		}
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"full", "full/inventory.cfg"},
		{"kubespray", "kubespray/inventory.cfg"},
		{"yaml", "yaml/hosts.yml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := LoadWith(filepath.Join("testdata", tc.file), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			js, err := inv.ListJSON()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".list.json"), append(js, '\n'))
			golden(t, filepath.Join("testdata", tc.name+".graph.txt"), []byte(inv.Graph()+"\n"))
		})
	}
}
