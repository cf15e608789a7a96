package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// KubernetesVersion is the release BuildKubernetes builds. tools/k8s/go.mod
// pins the same version; BuildKubernetes checks that they agree.
const KubernetesVersion = "v1.37.2"

// kubernetesBuildDate is the commit time the module proxy reports for
// k8s.io/kubernetes v1.37.2. Stamping it instead of the wall clock keeps the
// binaries reproducible: the same inputs give the same sha256 on any machine.
const kubernetesBuildDate = "2026-10-27T12:01:04Z"

// kubernetesToolsModule is the module path of tools/k8s/go.mod, used to
// recognise the directory.
const kubernetesToolsModule = "gokube/tools/k8s"

// KubernetesBinaries lists the commands BuildKubernetes puts in the cache, in
// build order (the largest first, so a cold build fills the build cache with
// the shared packages early).
func KubernetesBinaries() []string {
	return []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy", "kubeadm"}
}

// BuildKubernetes builds the Kubernetes control-plane and node binaries from
// the module proxy, through the pinned module in toolsDir (the repository's
// tools/k8s), into artifactDir/kubernetes/<KubernetesVersion>/, and records
// their hashes in artifactDir/SHA256SUMS next to the etcd entries.
// Cached: a binary whose file matches its SHA256SUMS entry is not rebuilt.
func BuildKubernetes(ctx context.Context, artifactDir, toolsDir string, log io.Writer) error {
	return buildKubernetes(ctx, artifactDir, toolsDir, KubernetesBinaries(), log)
}

// BuildKubernetesBinaries is BuildKubernetes for some of the binaries only
// (a control plane needs four of the six; each costs minutes cold).
func BuildKubernetesBinaries(ctx context.Context, artifactDir, toolsDir string, bins []string, log io.Writer) error {
	for _, b := range bins {
		if !slices.Contains(KubernetesBinaries(), b) {
			return fmt.Errorf("kubernetes artifacts: %q is not one of %s", b, strings.Join(KubernetesBinaries(), ", "))
		}
	}
	return buildKubernetes(ctx, artifactDir, toolsDir, bins, log)
}

func buildKubernetes(ctx context.Context, artifactDir, toolsDir string, bins []string, log io.Writer) error {
	relDir := "kubernetes/" + KubernetesVersion
	c, err := openCacheDir(ctx, artifactDir, relDir, "kubernetes", bins)
	if err != nil {
		return err
	}
	defer c.unlock()
	outDir, sumsPath, missing := c.outDir, c.sumsPath, c.missing
	for _, b := range bins {
		if !slices.Contains(missing, b) {
			fmt.Fprintf(log, "cached %s/%s\n", relDir, b)
		}
	}
	if len(missing) == 0 {
		return nil
	}

	goCmd, err := findGo()
	if err != nil {
		return fmt.Errorf("kubernetes artifacts: %w", err)
	}
	if err := checkKubernetesTools(ctx, goCmd, toolsDir); err != nil {
		return err
	}
	// Built into a private directory beside the cache, so the rename into
	// place is atomic and a cancelled build leaves nothing half-written
	// under a real name.
	tmp, err := os.MkdirTemp(artifactDir, ".kubernetes-build-")
	if err != nil {
		return fmt.Errorf("kubernetes artifacts: %w", err)
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(log, "building %d Kubernetes binaries (%s) from the module proxy: the first build takes 15-30 minutes on 2 cores (kube-apiserver alone 10+), later ones seconds from Go's build cache\n", len(missing), strings.Join(missing, ", "))
	for i, b := range missing {
		start := time.Now()
		fmt.Fprintf(log, "[%d/%d] building %s/%s\n", i+1, len(missing), relDir, b)
		out := filepath.Join(tmp, b)
		if err := runKubernetesBuild(ctx, goCmd, toolsDir, b, out, log); err != nil {
			return err
		}
		if err := checkKubernetesBinary(ctx, out); err != nil {
			return err
		}
		if err := os.Chmod(out, 0o755); err != nil {
			return fmt.Errorf("kubernetes artifacts: %w", err)
		}
		sum, err := fileSHA256(out)
		if err != nil {
			return fmt.Errorf("kubernetes artifacts: %w", err)
		}
		if err := os.Rename(out, filepath.Join(outDir, b)); err != nil {
			return fmt.Errorf("kubernetes artifacts: %w", err)
		}
		// SHA256SUMS is rewritten after every binary: a build interrupted
		// later keeps what it finished as cached.
		if err := updateSums(sumsPath, map[string]string{relDir + "/" + b: sum}); err != nil {
			return err
		}
		size := int64(0)
		if fi, err := os.Stat(filepath.Join(outDir, b)); err == nil {
			size = fi.Size()
		}
		fmt.Fprintf(log, "built %s/%s (%.1f MB) in %s\n", relDir, b, float64(size)/1e6, time.Since(start).Round(time.Second))
	}
	return nil
}

// kubernetesLDFlags mirrors what hack/lib/version.sh stamps into a release
// (both version packages, since kubectl reports client-go's), so --version
// prints the release rather than v0.0.0-master. -s -w drop the symbol and
// DWARF tables, as release builds do; gitCommit stays unset because the
// module proxy does not tell which commit the tag is.
func kubernetesLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	vars := [][2]string{
		{"gitVersion", KubernetesVersion},
		{"gitMajor", major},
		{"gitMinor", minor},
		{"gitTreeState", "clean"},
		{"buildDate", kubernetesBuildDate},
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, v := range vars {
			flags = append(flags, "-X", pkg+"."+v[0]+"="+v[1])
		}
	}
	return strings.Join(flags, " ")
}

// runKubernetesBuild builds one command of k8s.io/kubernetes.
func runKubernetesBuild(ctx context.Context, goCmd, toolsDir, bin, out string, log io.Writer) error {
	if err := goBuild(ctx, goCmd, toolsDir, "k8s.io/kubernetes/cmd/"+bin, kubernetesLDFlags(), out, nil, log); err != nil {
		return fmt.Errorf("kubernetes artifacts: %w", err)
	}
	return nil
}

// checkKubernetesTools makes sure toolsDir is the pinned module and that it
// pins the version this code stamps into the binaries.
func checkKubernetesTools(ctx context.Context, goCmd, toolsDir string) error {
	if _, err := os.Stat(filepath.Join(toolsDir, "go.mod")); err != nil {
		return fmt.Errorf("kubernetes artifacts: %s is not the tools/k8s module: %w", toolsDir, err)
	}
	cmd := exec.CommandContext(ctx, goCmd, "list", "-m", "-f", "{{.Path}} {{.Version}}", "k8s.io/kubernetes")
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kubernetes artifacts: go list -m k8s.io/kubernetes in %s: %w: %s", toolsDir, err, strings.TrimSpace(stderr.String()))
	}
	if got, want := strings.TrimSpace(string(out)), "k8s.io/kubernetes "+KubernetesVersion; got != want {
		return fmt.Errorf("kubernetes artifacts: %s/go.mod pins %q, this gokube builds %q", toolsDir, got, want)
	}
	return nil
}

// checkKubernetesBinary runs the fresh binary's version command, so a build
// that stamped the wrong version never reaches the cache.
func checkKubernetesBinary(ctx context.Context, path string) error {
	args := []string{"--version"}
	switch filepath.Base(path) {
	case "kubectl":
		args = []string{"version", "--client"}
	case "kubeadm":
		args = []string{"version", "-o", "short"}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubernetes artifacts: %s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	if !strings.Contains(string(out), KubernetesVersion) {
		return fmt.Errorf("kubernetes artifacts: %s %s printed %q, want %s", filepath.Base(path), strings.Join(args, " "), strings.TrimSpace(string(out)), KubernetesVersion)
	}
	return nil
}

// updateSums merges set into the SHA256SUMS file at path and replaces the
// file atomically. The caller holds the cache lock.
func updateSums(path string, set map[string]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kubernetes artifacts: %w", err)
	}
	merged, err := mergeSums(path, old, set)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, merged, 0o644)
}

// mergeSums returns the SHA256SUMS content old (named name in errors) with
// the entries of set added or replaced. Every other entry is kept; the result
// is sorted by path in sha256sum's text format, as Artifacts writes it.
func mergeSums(name string, old []byte, set map[string]string) ([]byte, error) {
	sums, err := parseSums(name, old)
	if err != nil {
		return nil, err
	}
	for p, s := range set {
		if !isSHA256Hex(s) || p == "" || strings.ContainsAny(p, "\n\\") {
			return nil, fmt.Errorf("%s: bad entry %q for %q", name, s, p)
		}
		sums[p] = s
	}
	paths := make([]string, 0, len(sums))
	for p := range sums {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b bytes.Buffer
	for _, p := range paths {
		fmt.Fprintf(&b, "%s  %s\n", sums[p], p)
	}
	return b.Bytes(), nil
}

// parseSums reads sha256sum output: "<hex>  <path>" (text mode) or
// "<hex> *<path>" (binary mode), blank lines ignored.
func parseSums(name string, data []byte) (map[string]string, error) {
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(line) < 67 || !isSHA256Hex(line[:64]) || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
			return nil, fmt.Errorf("%s:%d: want \"<sha256>  <path>\", got %q", name, n, line)
		}
		sums[line[66:]] = strings.ToLower(line[:64])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return sums, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// FindKubernetesTools returns the tools/k8s directory of the gokube source
// tree: looked for upwards from the working directory, then from the running
// executable's directory (bin/gokube in a checkout).
func FindKubernetesTools() (string, error) {
	return findToolsModule("k8s", kubernetesToolsModule)
}
