package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// pinnedEtcdChecksums reads the sha256 the download role pins per etcd
// version and binary.
func pinnedEtcdChecksums(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile("../roles/download/defaults/main.yml")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Sums map[string]map[string]string `yaml:"etcd_binary_checksums"`
	}
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d.Sums
}

// TestEtcdToolsPinned: tools/etcd/go.mod, this package and the download
// role agree on the versions and binaries.
func TestEtcdToolsPinned(t *testing.T) {
	b, err := os.ReadFile("../tools/etcd/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range etcdCommands() {
		if !strings.Contains(string(b), "\t"+c[1]+" "+EtcdBuildVersion+"\n") {
			t.Errorf("tools/etcd/go.mod does not require %s %s", c[1], EtcdBuildVersion)
		}
	}
	if !isModuleDir("../tools/etcd", etcdToolsModule) {
		t.Errorf("tools/etcd/go.mod does not declare module %s", etcdToolsModule)
	}
	sums := pinnedEtcdChecksums(t)
	built := sums[strings.TrimPrefix(EtcdBuildVersion, "v")]
	if len(built) != len(etcdCommands()) {
		t.Errorf("download role pins %v for %s, want %v", built, EtcdBuildVersion, EtcdBuildBinaries())
	}
	for _, c := range EtcdBuildBinaries() {
		if !isSHA256Hex(built[c]) {
			t.Errorf("download role: no sha256 for %s %s", EtcdBuildVersion, c)
		}
	}
	for _, a := range etcdArtifacts() {
		if !isSHA256Hex(sums[strings.TrimPrefix(EtcdDebianVersion, "v")][filepath.Base(a.Rel)]) {
			t.Errorf("download role: no sha256 for %s", a.Rel)
		}
	}
	f := etcdLDFlags()
	if !strings.Contains(f, "version.Version="+strings.TrimPrefix(EtcdBuildVersion, "v")+" ") {
		t.Errorf("ldflags %q do not stamp %s", f, EtcdBuildVersion)
	}
}

// TestBuildEtcd builds etcd, etcdctl and etcdutl from the module proxy into
// a fresh cache (seconds with a warm Go build cache, minutes cold) and
// checks that the build is the one the download role pins (reproducible),
// reports its version, is cached, and is rebuilt when corrupted.
func TestBuildEtcd(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := BuildEtcd(ctx, dir, "../tools/etcd", testWriter{t}); err != nil {
		t.Fatal(err)
	}
	sums, err := ReadSums(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := pinnedEtcdChecksums(t)[strings.TrimPrefix(EtcdBuildVersion, "v")]
	for _, b := range EtcdBuildBinaries() {
		rel := "etcd/" + EtcdBuildVersion + "/" + b
		got, err := fileSHA256(filepath.Join(dir, rel))
		if err != nil || got != sums[rel] {
			t.Errorf("%s: sha256 %s, SHA256SUMS says %q (%v)", rel, got, sums[rel], err)
		}
		if got != pinned[b] {
			t.Errorf("%s: sha256 %s, roles/download pins %s: the build is not reproducible", rel, got, pinned[b])
		}
	}
	out, err := exec.Command(filepath.Join(dir, "etcd", EtcdBuildVersion, "etcd"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "etcd Version: 3.7.0\n") || strings.Contains(string(out), "Not provided") {
		t.Fatalf("etcd --version: %v\n%s", err, out)
	}
	out, err = exec.Command(filepath.Join(dir, "etcd", EtcdBuildVersion, "etcdutl"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "etcdutl version: 3.7.0\n") {
		t.Fatalf("etcdutl version: %v\n%s", err, out)
	}
	etcdPath := filepath.Join(dir, "etcd", EtcdBuildVersion, "etcd")
	fi, _ := os.Stat(etcdPath)
	if err := BuildEtcd(ctx, dir, "../tools/etcd", testWriter{t}); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(etcdPath); !fi.ModTime().Equal(fi2.ModTime()) {
		t.Error("a cached binary was rebuilt")
	}
	ctlPath := filepath.Join(dir, "etcd", EtcdBuildVersion, "etcdctl")
	if err := os.WriteFile(ctlPath, []byte("junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := BuildEtcd(ctx, dir, "../tools/etcd", testWriter{t}); err != nil {
		t.Fatal(err)
	}
	sumCheck := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sumCheck.Dir = dir
	if out, err := sumCheck.CombinedOutput(); err != nil {
		t.Fatalf("corrupted etcdctl not rebuilt: %v\n%s", err, out)
	}
	if fi3, _ := os.Stat(etcdPath); !fi.ModTime().Equal(fi3.ModTime()) {
		t.Error("rebuilding etcdctl rebuilt etcd too")
	}
}
