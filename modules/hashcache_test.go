package modules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHashCache runs batches of file probes on the control machine through
// the prelude with a hash cache and checks, by counting sha256sum
// processes through a shim, that a warm batch hashes nothing, that any
// write (even one that keeps size and mtime) is seen, that an untrusted
// cache file is ignored, and that check mode writes nothing; the output is
// always the same as without the prelude.
func TestHashCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the hash cache is root's: run the tests as root (make test does)")
	}
	dir := t.TempDir()
	a := filepath.Join(dir, "a.bin")
	b := filepath.Join(dir, "b bin's")
	for p, c := range map[string]string{a: "alpha\n", b: "beta\n"} {
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cacheDir := filepath.Join(t.TempDir(), "gokube")
	cacheFile := filepath.Join(cacheDir, hashCacheFile)
	batch := "{\n" + fileProbe{sha256: true}.script(a) + "\n}\n{\n" + fileProbe{sha256: true}.script(b) + "\n}\n"

	run := countingShell(t, "sha256sum")
	rw := ProbePrelude(batch, HashCache{Dir: cacheDir, Write: true})
	ro := ProbePrelude(batch, HashCache{Dir: cacheDir})
	same := func(step, script string, wantHash int) {
		t.Helper()
		alone, _ := run(batch)
		got, n := run(script + batch)
		if got = withoutLinkScan(got); got != alone {
			t.Errorf("%s: output differs with the cache\n--- alone\n%s\n--- with the cache\n%s", step, alone, got)
		}
		if n != wantHash {
			t.Errorf("%s: %d sha256sum processes, want %d", step, n, wantHash)
		}
	}

	// Just written: too recent to be recorded (a write in the same clock
	// tick could follow unseen), so hashed and not cached.
	same("fresh files", rw, 1)
	if _, err := os.Stat(cacheFile); err == nil {
		t.Error("a file changed within the last two seconds was recorded")
	}
	time.Sleep(2100 * time.Millisecond) // let the files' ctime age past the margin
	same("check mode", ro, 1)
	if _, err := os.Stat(cacheDir); err == nil {
		t.Error("check mode (Write false) created the cache")
	}
	same("first run", rw, 1)
	fi, err := os.Stat(cacheFile)
	if err != nil {
		t.Fatalf("no cache after a run: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(cacheDir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("cache dir: %v %v, want mode 0700", di.Mode(), err)
	}
	same("warm run", rw, 0)
	same("warm run, check mode", ro, 0)

	// Same size, same mtime, other content: ctime tells.
	old, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, []byte("ALPHA\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(a, old.ModTime(), old.ModTime()); err != nil {
		t.Fatal(err)
	}
	// Read-only: a run here that came two seconds after the write (a busy
	// machine) would record the new checksum, and the step below expects
	// to record it.
	same("content changed, mtime set back", ro, 1)
	if out, _ := run(ro + batch); !strings.Contains(out, "sha256=") || strings.Count(out, "sha256=") != 2 {
		t.Errorf("want two checksums:\n%s", out)
	}

	// A cache file anyone but root could have written is not read.
	time.Sleep(2100 * time.Millisecond)
	same("recorded again", rw, 1)
	same("warm again", rw, 0)
	if err := os.Chmod(cacheFile, 0o644); err != nil {
		t.Fatal(err)
	}
	same("cache file mode 0644", ro, 1)
	if err := os.Chmod(cacheFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	same("cache dir mode 0755", rw, 1)
	if err := os.Chmod(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A planted wrong checksum under the right key is what the cache
	// would answer: the trust rests on the file's owner and mode, which
	// the checks above cover; a garbled line is a miss.
	data, err := os.ReadFile(cacheFile)
	if err != nil {
		t.Fatal(err)
	}
	garbled := strings.Replace(string(data), "\x1f", "\x1fx", 1)
	if err := os.WriteFile(cacheFile, []byte(garbled), 0o600); err != nil {
		t.Fatal(err)
	}
	same("garbled entry", rw, 1)
}

// TestHashCacheSHA1: stat's sha1 (Ansible's default) has cache entries of
// its own beside the sha256 of the same file: a warm batch that asks both
// for one file, and sha1 alone for another, starts no hashing process, a
// write is seen by both, and the answers are those without the cache.
func TestHashCacheSHA1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the hash cache is root's: run the tests as root (make test does)")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b c")
	for p, c := range map[string]string{a: "alpha\n", b: "beta\n"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cacheDir := filepath.Join(t.TempDir(), "gokube")
	batch := ""
	for _, p := range []fileProbe{{sha256: true}, {sha1: true}} {
		batch += "{\n" + p.script(a) + "\n}\n"
	}
	batch += "{\n" + fileProbe{sha1: true}.script(b) + "\n}\n"
	run := countingShell(t, "sha256sum", "sha1sum")
	rw := ProbePrelude(batch, HashCache{Dir: cacheDir, Write: true})
	same := func(step string, wantHash int) {
		t.Helper()
		alone, _ := run(batch)
		got, n := run(rw + batch)
		if got = withoutLinkScan(got); got != alone {
			t.Errorf("%s: output differs with the cache\n--- alone\n%s\n--- with the cache\n%s", step, alone, got)
		}
		if strings.Count(got, "sha1=") != 2 || strings.Count(got, "sha256=") != 1 {
			t.Errorf("%s: want two sha1 and one sha256:\n%s", step, got)
		}
		if n != wantHash {
			t.Errorf("%s: %d hashing processes, want %d", step, n, wantHash)
		}
	}
	time.Sleep(2100 * time.Millisecond) // past the margin for recording
	same("first run", 2)                // one sha256sum, one sha1sum for both files
	same("warm run", 0)
	if data, err := os.ReadFile(filepath.Join(cacheDir, hashCacheFile)); err != nil || strings.Count(string(data), "\n") != 3 {
		t.Errorf("want 3 entries (a's sha256 and sha1, b's sha1): %q %v", data, err)
	}
	if err := os.WriteFile(b, []byte("BETA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	same("b written", 1)
}
