package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gokube/internal/labtest"
)

func TestProgressLine(t *testing.T) {
	got := progressLine("copy : big", 12*time.Second, map[string]hostProgress{
		"b": {elapsed: 10 * time.Second, moved: 40 << 20},
		"a": {elapsed: 12 * time.Second, moved: 2 << 10}, // talking, not transferring
	})
	want := "  ... copy : big still running on a, b (12s); b: 40.0 MiB at 4.0 MiB/s"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// An upload of a large file over SSH prints progress lines with the
// bytes moved and the rate while it runs (here every 10 ms, so even a fast
// upload of 64 MiB shows some), and the bytes count up.
func TestUploadProgressLab(t *testing.T) {
	l := labtest.Require(t, 1)
	h := l.Hosts()[0]
	dir := t.TempDir()
	big := make([]byte, 32<<20)
	rand.Read(big)
	dest := "/tmp/gk-progress-" + filepath.Base(dir)
	t.Cleanup(func() { labtest.SSH(l, h.Addr, "rm -f "+dest) })
	files := map[string]string{
		"inventory.cfg": fmt.Sprintf("%s ansible_host=%s ansible_user=deploy ansible_ssh_private_key_file=%s ansible_ssh_known_hosts_file=%s\n",
			h.Name, h.Addr, l.KeyPath(), l.KnownHostsPath()),
		"site.yml": "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: big upload\n      copy:\n        src: big.bin\n        dest: " + dest + "\n",
		"big.bin":  string(big),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Inventory: []string{filepath.Join(dir, "inventory.cfg")}, Playbook: filepath.Join(dir, "site.yml"),
		Out: &out, ProgressEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	re := regexp.MustCompile(`\.\.\. big upload still running on ` + regexp.QuoteMeta(h.Name) + ` \(\d+s\); ` + regexp.QuoteMeta(h.Name) + `: ([0-9.]+) MiB at [0-9.]+ [KMG]?i?B/s`)
	var seen []string
	last := 0.0
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		var mib float64
		fmt.Sscan(m[1], &mib)
		if mib < last {
			t.Errorf("bytes went down: %s after %.1f MiB", m[1], last)
		}
		last = mib
		seen = append(seen, m[1])
	}
	if len(seen) == 0 {
		t.Fatalf("no progress line with bytes:\n%s", out.String())
	}
	if ev := r.Events[len(r.Events)-1]; ev.Bytes < 32<<20 || ev.Status != "changed" {
		t.Fatalf("the upload's event: %+v", ev)
	}
	t.Logf("%d progress lines, MiB moved: %s", len(seen), strings.Join(seen, " "))
}
