package main

import (
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gokube/internal/labtest"
)

// A real run on the lab (a change, a handler, a failure) is drawn with
// --timeline, rendered by a real headless browser (Debian's chromium),
// and the screenshot must show one row of bars per host, the failing
// host's row with the failure's colour.
func TestTimelineInBrowserLab(t *testing.T) {
	l := labtest.Require(t, 2)
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Fatal("no chromium on the control machine (make deps installs it)")
	}
	hosts := l.Hosts()[:2]
	dir := t.TempDir()
	mark := "/tmp/gk-tl-" + filepath.Base(dir)
	pb := filepath.Join(dir, "site.yml")
	os.WriteFile(pb, []byte(`- hosts: all
  gather_facts: false
  tasks:
    - name: write a file
      copy:
        content: "{{ .inventory_hostname }}\n"
        dest: `+mark+`
      notify: react
    - name: take a moment
      command: sleep 0.2
    - name: fail on the second host
      command: "false"
      when: eq .inventory_hostname "`+hosts[1].Name+`"
  handlers:
    - name: react
      command: "true"
`), 0o644)
	for _, h := range hosts {
		t.Cleanup(func() { labtest.SSH(l, h.Addr, "rm -f "+mark) })
	}
	html := filepath.Join(dir, "run.html")
	out, err := playCLI(t, "-i", l.InventoryPath(), pb, "--limit", hosts[0].Name+":"+hosts[1].Name, "--timeline", html, "--no-retry-file")
	if err == nil || !strings.Contains(out, "timeline: "+html) {
		t.Fatalf("want a failed run with a timeline: %v\n%s", err, out)
	}
	page, _ := os.ReadFile(html)
	if !strings.Contains(string(page), "2 host(s), 4 task(s)") || strings.Contains(string(page), " 0 B on the network") || !strings.Contains(string(page), "<td>changed</td>") {
		t.Errorf("page summary (hosts, tasks, bytes counted on SSH):\n%.600s", page)
	}
	shot := filepath.Join(dir, "shot.png")
	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=1400,500", "--screenshot="+shot, "file://"+html)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	rows := barRows(img)
	if len(rows) != 2 {
		t.Fatalf("screenshot shows %d rows of bars, want 2 (one per host): %+v", len(rows), rows)
	}
	if rows[0].failed || !rows[1].failed {
		t.Errorf("the failure's colour should be in the second row only: %+v", rows)
	}
	t.Logf("rows in the screenshot: %+v", rows)
}

type bandInfo struct {
	top, bottom int
	failed      bool
}

// barRows finds horizontal bands of the screenshot holding outcome colours
// at least 12 px tall: the bars are 18 px, the legend's swatches 10 px.
func barRows(img image.Image) []bandInfo {
	outcome := []([3]int){{0x3f, 0xa3, 0x4d}, {0xe0, 0xa5, 0x26}, {0xd6, 0x45, 0x45}, {0x8e, 0x2c, 0x9c}, {0x9a, 0xa5, 0xb1}}
	near := func(r, g, b int, c [3]int) bool {
		d := func(a, b int) int {
			if a > b {
				return a - b
			}
			return b - a
		}
		return d(r, c[0])+d(g, c[1])+d(b, c[2]) < 24
	}
	var out []bandInfo
	cur := -1
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		n, red := 0, false
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			ri, gi, bi := int(r>>8), int(g>>8), int(b>>8)
			for i, c := range outcome {
				if near(ri, gi, bi, c) {
					n++
					red = red || i == 2
					break
				}
			}
		}
		if n >= 3 {
			if cur < 0 {
				out = append(out, bandInfo{top: y})
				cur = len(out) - 1
			}
			out[cur].bottom = y
			out[cur].failed = out[cur].failed || red
		} else {
			cur = -1
		}
	}
	var rows []bandInfo
	for _, b := range out {
		if b.bottom-b.top+1 >= 12 {
			rows = append(rows, b)
		}
	}
	return rows
}
