package inventory

import (
	"flag"
	"os"
	"path/filepath"
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
	if string(want) != string(got) {
		t.Errorf("%s differs from output:\n--- want\n%s\n--- got\n%s", path, want, got)
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
