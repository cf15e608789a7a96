package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// EtcdBuildVersion is the etcd release BuildEtcd builds from the module
// proxy: the default of Kubernetes v1.37.2's kubeadm
// (cmd/kubeadm/app/constants.DefaultEtcdVersion = "3.7.0-0"). tools/etcd/go.mod
// pins the same version; BuildEtcd checks that they agree.
const EtcdBuildVersion = "v3.7.0"

// etcdToolchain is the Go release the etcd build runs with (GOTOOLCHAIN;
// the go command fetches it from the module proxy when the local one
// differs). The binaries embed it, so pinning it makes the build
// reproducible: the same sha256 on any machine, which roles/download pins.
const etcdToolchain = "go1.26.8"

// etcdGitSHA is stamped where etcd's own build puts the commit: the module
// proxy does not tell which commit the tag is, and the default text asks
// for etcd's build script.
const etcdGitSHA = "none (built from the module proxy by gokube)"

const etcdToolsModule = "gokube/tools/etcd"

// etcdCommands maps each binary BuildEtcd caches to its main package.
func etcdCommands() [][2]string {
	return [][2]string{
		{"etcd", "go.etcd.io/etcd/server/v3"},
		{"etcdctl", "go.etcd.io/etcd/etcdctl/v3"},
		{"etcdutl", "go.etcd.io/etcd/etcdutl/v3"},
	}
}

// EtcdBuildBinaries lists the binaries BuildEtcd puts in the cache.
func EtcdBuildBinaries() []string {
	cmds := etcdCommands()
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c[0]
	}
	return out
}

// FindEtcdTools returns the tools/etcd directory of the gokube source tree
// (upwards from the working directory, then from the executable's).
func FindEtcdTools() (string, error) {
	return findToolsModule("etcd", etcdToolsModule)
}

// BuildEtcd builds etcd, etcdctl and etcdutl EtcdBuildVersion from the module
// proxy, through the pinned module in toolsDir (the repository's
// tools/etcd), into artifactDir/etcd/<EtcdBuildVersion>/, and records their
// hashes in artifactDir/SHA256SUMS beside the other entries. Cached: a
// binary whose file matches its SHA256SUMS entry is not rebuilt. A cold
// build is a few minutes on 2 cores.
func BuildEtcd(ctx context.Context, artifactDir, toolsDir string, log io.Writer) error {
	relDir := "etcd/" + EtcdBuildVersion
	var names []string
	for _, c := range etcdCommands() {
		names = append(names, c[0])
	}
	cd, err := openCacheDir(ctx, artifactDir, relDir, "etcd", names)
	if err != nil {
		return err
	}
	defer cd.unlock()
	outDir, sumsPath := cd.outDir, cd.sumsPath
	var missing [][2]string
	for _, c := range etcdCommands() {
		if slices.Contains(cd.missing, c[0]) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		fmt.Fprintf(log, "cached etcd %s (etcd, etcdctl, etcdutl)\n", EtcdBuildVersion)
		return nil
	}
	goCmd, err := findGo()
	if err != nil {
		return fmt.Errorf("etcd artifacts: %w", err)
	}
	if err := checkEtcdTools(ctx, goCmd, toolsDir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(artifactDir, ".etcd-build-")
	if err != nil {
		return fmt.Errorf("etcd artifacts: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, c := range missing {
		start := time.Now()
		fmt.Fprintf(log, "building %s/%s from the module proxy\n", relDir, c[0])
		out := filepath.Join(tmp, c[0])
		if err := goBuild(ctx, goCmd, toolsDir, c[1], etcdLDFlags(), out, []string{"GOTOOLCHAIN=" + etcdToolchain}, log); err != nil {
			return fmt.Errorf("etcd artifacts: %w", err)
		}
		if err := checkEtcdBinary(ctx, out); err != nil {
			return err
		}
		if err := os.Chmod(out, 0o755); err != nil {
			return fmt.Errorf("etcd artifacts: %w", err)
		}
		sum, err := fileSHA256(out)
		if err != nil {
			return fmt.Errorf("etcd artifacts: %w", err)
		}
		if err := os.Rename(out, filepath.Join(outDir, c[0])); err != nil {
			return fmt.Errorf("etcd artifacts: %w", err)
		}
		if err := updateSums(sumsPath, map[string]string{relDir + "/" + c[0]: sum}); err != nil {
			return err
		}
		fmt.Fprintf(log, "built %s/%s (sha256 %s) in %s\n", relDir, c[0], sum, time.Since(start).Round(time.Second))
	}
	return nil
}

// etcdLDFlags: the version itself is a variable of go.etcd.io/etcd/api/v3
// that already holds the module's release; it is set again so a mismatched
// api module can never pass for the release. -s -w as etcd's release build.
func etcdLDFlags() string {
	return strings.Join([]string{"-s", "-w",
		"-X", "go.etcd.io/etcd/api/v3/version.Version=" + strings.TrimPrefix(EtcdBuildVersion, "v"),
		"-X", "'go.etcd.io/etcd/api/v3/version.GitSHA=" + etcdGitSHA + "'",
	}, " ")
}

// checkEtcdTools makes sure toolsDir is the pinned module, at the version
// this code stamps, for all three commands.
func checkEtcdTools(ctx context.Context, goCmd, toolsDir string) error {
	if !isModuleDir(toolsDir, etcdToolsModule) {
		return fmt.Errorf("etcd artifacts: %s is not the tools/etcd module (%s)", toolsDir, etcdToolsModule)
	}
	mods := []string{"go.etcd.io/etcd/api/v3"}
	for _, c := range etcdCommands() {
		mods = append(mods, c[1])
	}
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"list", "-m", "-f", "{{.Path}} {{.Version}}"}, mods...)...)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN="+etcdToolchain)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("etcd artifacts: go list -m in %s: %w: %s", toolsDir, err, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) != 2 || f[1] != EtcdBuildVersion {
			return fmt.Errorf("etcd artifacts: %s/go.mod pins %q, this gokube builds etcd %s", toolsDir, line, EtcdBuildVersion)
		}
	}
	return nil
}

// checkEtcdBinary runs the fresh binary's version command, so a build that
// reports another version never reaches the cache.
func checkEtcdBinary(ctx context.Context, path string) error {
	name := filepath.Base(path)
	args := []string{"version"}
	if name == "etcd" {
		args = []string{"--version"}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("etcd artifacts: %s %s: %w: %s", name, args[0], err, out)
	}
	want := name + " version: " + strings.TrimPrefix(EtcdBuildVersion, "v")
	if name == "etcd" {
		want = "etcd Version: " + strings.TrimPrefix(EtcdBuildVersion, "v")
	}
	if !strings.Contains(string(out), want+"\n") {
		return fmt.Errorf("etcd artifacts: %s %s printed %q, want %q", name, args[0], strings.TrimSpace(string(out)), want)
	}
	return nil
}
