package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultArtifactsDir caches the release binaries the roles install.
const DefaultArtifactsDir = "/var/lib/gokube/artifacts"

// EtcdDebianVersion is the etcd Artifacts takes from Debian bookworm's
// etcd-server and etcd-client packages: the older of the two versions the
// roles support (BuildEtcd builds the current one).
const EtcdDebianVersion = "v3.4.23"

// artifact is one cached binary taken from a Debian package.
type artifact struct {
	Rel  string // path in the cache, e.g. etcd/v3.4.23/etcd
	Deb  string // package name
	Path string // path inside the package
}

func etcdArtifacts() []artifact {
	return []artifact{
		{Rel: "etcd/" + EtcdDebianVersion + "/etcd", Deb: "etcd-server", Path: "usr/bin/etcd"},
		{Rel: "etcd/" + EtcdDebianVersion + "/etcdctl", Deb: "etcd-client", Path: "usr/bin/etcdctl"},
	}
}

// KubernetesNote explains what the cache does not hold yet.
const KubernetesNote = "Kubernetes binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy): `gokube lab artifacts --kubernetes` (make k8s-artifacts) builds them from the module proxy."

// Artifacts fills dir with the etcd binaries (from Debian's packages,
// fetched with `apt-get download` and unpacked with `dpkg-deb -x`, nothing
// installed) and writes dir/SHA256SUMS (sha256sum format, paths relative to
// dir). Cached: present files whose hash matches SHA256SUMS are kept.
func Artifacts(ctx context.Context, dir string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	sums, _ := ReadSums(filepath.Join(dir, "SHA256SUMS"))
	want := etcdArtifacts()
	var missing []artifact
	for _, a := range want {
		got, err := fileSHA256(filepath.Join(dir, a.Rel))
		if err != nil || sums[a.Rel] == "" || got != sums[a.Rel] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		tmp, err := os.MkdirTemp("", "gokube-artifacts-")
		if err != nil {
			return fmt.Errorf("artifacts: %w", err)
		}
		defer os.RemoveAll(tmp)
		// apt downloads as _apt when it can write there; root otherwise,
		// with a warning.
		if u, err := user.Lookup("_apt"); err == nil {
			if uid, err := strconv.Atoi(u.Uid); err == nil {
				_ = os.Chown(tmp, uid, -1)
			}
		}
		debs := map[string]bool{}
		for _, a := range missing {
			debs[a.Deb] = true
		}
		for d := range debs {
			fmt.Fprintf(log, "fetching Debian package %s\n", d)
			cmd := []string{"download", d + "=" + debianEtcdVersion}
			if err := runIn(ctx, tmp, log, "apt-get", cmd...); err != nil {
				// A fresh machine may have no package lists yet.
				fmt.Fprintf(log, "apt-get download failed (%v); running apt-get update once\n", err)
				if err := runIn(ctx, tmp, log, "apt-get", "update"); err != nil {
					return fmt.Errorf("artifacts: apt-get update: %w", err)
				}
				if err := runIn(ctx, tmp, log, "apt-get", cmd...); err != nil {
					return fmt.Errorf("artifacts: apt-get download %s: %w", d, err)
				}
			}
			matches, _ := filepath.Glob(filepath.Join(tmp, d+"_*.deb"))
			if len(matches) != 1 {
				return fmt.Errorf("artifacts: apt-get download %s: want one .deb, found %v", d, matches)
			}
			if err := runIn(ctx, tmp, log, "dpkg-deb", "-x", matches[0], filepath.Join(tmp, "x")); err != nil {
				return fmt.Errorf("artifacts: unpack %s: %w", d, err)
			}
		}
		for _, a := range missing {
			src := filepath.Join(tmp, "x", a.Path)
			b, err := os.ReadFile(src)
			if err != nil {
				return fmt.Errorf("artifacts: %s not in package %s: %w", a.Path, a.Deb, err)
			}
			dst := filepath.Join(dir, a.Rel)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("artifacts: %w", err)
			}
			if err := writeFileAtomic(dst, b, 0o755); err != nil {
				return err
			}
			fmt.Fprintf(log, "cached %s\n", dst)
		}
	}
	// Rewrite the sums from the files themselves, keeping entries of
	// other artifacts (the lead's Kubernetes build may add some).
	if sums == nil {
		sums = map[string]string{}
	}
	for _, a := range want {
		h, err := fileSHA256(filepath.Join(dir, a.Rel))
		if err != nil {
			return fmt.Errorf("artifacts: %w", err)
		}
		sums[a.Rel] = h
	}
	var keys []string
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s  %s\n", sums[k], k)
	}
	if err := writeFileAtomic(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "artifacts in %s (SHA256SUMS written); etcd %s\n", dir, EtcdDebianVersion)
	return nil
}

// debianEtcdVersion pins the package version, so the cache never silently
// changes under the roles.
const debianEtcdVersion = "3.4.23-4+b4"

// ReadSums parses a SHA256SUMS file into path -> hex digest.
func ReadSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("%s:%d: want \"<sha256>  <path>\"", path, n)
		}
		out[strings.TrimPrefix(name, "*")] = sum
	}
	return out, sc.Err()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func runIn(ctx context.Context, dir string, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	return cmd.Run()
}
