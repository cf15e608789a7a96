package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbePreludeSameOutput runs a batch of file probes on the control
// machine with and without ProbePrelude and requires the same output: the
// prelude only saves processes, it never changes what a module sees.
func TestProbePreludeSameOutput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.conf", "one\n", 0o644)
	b := write("b conf's $x", "two\n", 0o600)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	write("sub/base.bin", "three", 0o640)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	odd := write("new\nline", "x", 0o644)
	scripts := []string{
		fileProbe{sha256: true}.script(a),
		fileProbe{sha256: true}.script(b),
		fileProbe{dirBase: "base.bin", sha256: true}.script(sub),
		fileProbe{}.script(sub),
		fileProbe{follow: true}.script(link),
		fileProbe{}.script(link),
		fileProbe{sha256: true}.script(filepath.Join(dir, "absent")),
		fileProbe{sha256: true, sha1: true}.script(odd),
		fileProbe{content: true}.script(a),
	}
	batch := "{\n" + strings.Join(scripts, "\n}\n{\n") + "\n}\n"
	prelude := ProbePrelude(batch, HashCache{})
	if !strings.Contains(prelude, "stat --printf") || !strings.Contains(prelude, "sha256sum --") {
		t.Fatalf("prelude does not batch stat and sha256sum:\n%s", prelude)
	}
	if strings.Contains(prelude, "new\nline") {
		t.Errorf("a path with a newline must be left to its own probe:\n%s", prelude)
	}
	// Shims count the stat, sha256sum and readlink processes each way.
	run := countingShell(t, "stat", "sha256sum", "readlink")
	alone, procsAlone := run(batch)
	batched, procsBatched := run(prelude + batch)
	// The prelude prints its link scan first: every declared path (and
	// directory above one) that is a symbolic link, then the end of it.
	links, scanned := ProbeLinks([]byte(batched))
	if !scanned || !links[link] || len(links) != 1 {
		t.Errorf("link scan: %v (scanned %v), want only %s", links, scanned, link)
	}
	if !PathsUnlinked([]string{a, sub + "/base.bin"}, links) || PathsUnlinked([]string{link}, links) || PathsUnlinked([]string{link + "/x"}, links) {
		t.Errorf("PathsUnlinked disagrees with the scan %v", links)
	}
	// Content read line by line by the batch (gk_content) reads as the
	// base64 of the probe alone does.
	if batched = contentAsBase64(t, withoutLinkScan(batched)); alone != batched {
		t.Errorf("output differs with the prelude\n--- alone\n%s\n--- batched\n%s", alone, batched)
	}
	t.Logf("stat/sha256sum/readlink processes: %d alone, %d with the prelude", procsAlone, procsBatched)
	// Left to their own processes: the followed link (readlink -f) and
	// the name with a newline (stat and sha256sum); the plain link's
	// target comes from the batch's stat (%N), with no readlink.
	if procsBatched > 5 || procsBatched >= procsAlone {
		t.Errorf("the prelude saved too little: %d processes alone, %d batched", procsAlone, procsBatched)
	}
	for _, want := range []string{"sha256=", "type=link", "type=absent", "mode=600", "path=" + sub + "/base.bin"} {
		if !strings.Contains(alone, want) {
			t.Errorf("probe output lacks %q:\n%s", want, alone)
		}
	}
	if ProbePrelude(scripts[0], HashCache{}) != "" {
		t.Error("one path: no prelude expected")
	}
	// Two probes of one path share its stat; one checksum may come from
	// the hash cache.
	if ProbePrelude(scripts[3]+scripts[3], HashCache{}) == "" {
		t.Error("two probes of one path: a prelude expected")
	}
	if ProbePrelude(scripts[0], HashCache{Dir: "/var/cache/gokube"}) == "" {
		t.Error("one checksum with the hash cache: a prelude expected")
	}
}

// contentAsBase64 rewrites each run of content-line/content-tail lines (a
// batch's gk_content) as the content=<base64> line a probe alone prints.
func contentAsBase64(t *testing.T, out string) string {
	t.Helper()
	var b strings.Builder
	lines := strings.SplitAfter(out, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "content-line=") && !strings.HasPrefix(lines[i], "content-tail=") {
			b.WriteString(lines[i])
			continue
		}
		j := i
		for j < len(lines) && !strings.HasPrefix(lines[j], "content-tail=") {
			j++
		}
		if j == len(lines) {
			t.Fatalf("content lines without a tail:\n%s", out)
		}
		data, ok := contentLines([]byte(strings.Join(lines[i:j+1], "")))
		if !ok {
			t.Fatalf("content lines do not parse:\n%s", out)
		}
		b.WriteString("content=" + base64.StdEncoding.EncodeToString(data) + "\n")
		i = j
	}
	return b.String()
}

// withoutLinkScan is a batch's output without the prelude's link scan.
func withoutLinkScan(out string) string {
	var kept []string
	for _, l := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(l, probeLinkLine+" ") && l != probeLinksScanned+"\n" {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "")
}

// countingShell returns a runner of sh scripts whose PATH puts shims in
// front of tools: each shim logs a line and execs the real tool, so the
// runner returns the script's output and how many of those processes it
// started.
func countingShell(t *testing.T, tools ...string) func(script string) (string, int) {
	t.Helper()
	shims, calls := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	for _, tool := range tools {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(tool, "not found")
		}
		shim := "#!/bin/sh\necho " + tool + " >>" + shq(calls) + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(shims, tool), []byte(shim), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return func(script string) (string, int) {
		t.Helper()
		os.Remove(calls)
		cmd := exec.CommandContext(context.Background(), "/bin/sh", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		log, _ := os.ReadFile(calls)
		return string(out), strings.Count(string(log), "\n")
	}
}

// TestProbeContentByRead: in a batch, a small file's content is read with
// the shell's read (no process) and comes back byte for byte: empty, no
// final newline, blank lines, backslashes, tabs, CR, leading dashes and
// percent signs, a line that looks like a probe key. A NUL byte (read
// drops it; the byte count tells) and a file over contentReadMax fall back
// to base64: the only two base64 processes of the batch.
func TestProbeContentByRead(t *testing.T) {
	dir := t.TempDir()
	files := [][]byte{
		{},
		[]byte("a\nb\n"),
		[]byte("no newline"),
		[]byte("\n\n"),
		[]byte("  lead\\back\\\\n\ttab\r\n-x %s %% \\t\n"),
		[]byte("content=abc\ncontent-tail=x\ntype=absent\n"),
		[]byte("x\x00y\n"),
		bytes.Repeat([]byte("0123456789abcde\n"), contentReadMax/16+1),
		[]byte("h\xe9llo \xff\n"),
	}
	var batch strings.Builder
	for i, data := range files {
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&batch, "echo '--- probe %d'\n{\n%s}\n", i, fileProbe{content: true}.script(p))
	}
	run := countingShell(t, "base64")
	out, n := run(ProbePrelude(batch.String(), HashCache{}) + batch.String())
	if n != 2 {
		t.Errorf("%d base64 processes, want 2 (the NUL file and the large one)", n)
	}
	sections := strings.Split(out, "--- probe ")[1:]
	if len(sections) != len(files) {
		t.Fatalf("%d probe outputs, want %d:\n%s", len(sections), len(files), out)
	}
	for i, sec := range sections {
		_, body, _ := strings.Cut(sec, "\n")
		st, err := parseFileState([]byte(body))
		if err != nil {
			t.Errorf("file %d: %v", i, err)
			continue
		}
		if !st.HasData || !bytes.Equal(st.Content, files[i]) {
			t.Errorf("file %d: content %q, want %q", i, st.Content, files[i])
		}
	}
}

// TestProbeNamesOwner: the answer of a path that exists names its owner
// (an account change may rename it); that of an absent path does not.
func TestProbeNamesOwner(t *testing.T) {
	for out, want := range map[string]bool{
		"path=/a\ntype=absent\n": false,
		"path=/a\ntype=file\nmode=644\nuid=0\ngid=0\nowner=root\ngroup=root\nsize=1\n": true,
		"path=/a\ntype=file\ncontent-line=owner=x\n":                                   false,
		"": false,
	} {
		if got := ProbeNamesOwner([]byte(out)); got != want {
			t.Errorf("ProbeNamesOwner(%q) = %v, want %v", out, got, want)
		}
	}
	for out, want := range map[string]bool{
		"path=/a\ntype=absent\n":                                               true,
		"path=/a\ntype=file\nuid=0\ngid=0\nowner=root\ngroup=root\n":           true,
		"path=/a\ntype=file\nuid=997\ngid=0\nowner=UNKNOWN\ngroup=root\n":      false,
		"path=/a\ntype=file\nuid=0\ngid=997\nowner=root\ngroup=997\n":          false,
		"path=/a\ntype=file\nuid=0\ngid=0\nowner=root\ngroup=\n":               false,
		"path=/a\ntype=file\nowner=root\ngroup=root\nowner=UNKNOWN\ngroup=x\n": false,
	} {
		if got := ProbeOwnersNamed([]byte(out)); got != want {
			t.Errorf("ProbeOwnersNamed(%q) = %v, want %v", out, got, want)
		}
	}
	for out, want := range map[string]bool{
		"passwd=\ngroups=\nprimary=\n":                     true,
		"passwd=u:x:1:1::/:/bin/sh\ngroups=u\nprimary=u\n": false,
		"group=\n":       true,
		"group=g:x:5:\n": false,
		"":               false,
		"path=/a\n":      false,
	} {
		if got := AccountAbsent([]byte(out)); got != want {
			t.Errorf("AccountAbsent(%q) = %v, want %v", out, got, want)
		}
	}
}
