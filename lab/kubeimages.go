package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// KubeadmImageRepository is the image repository the kubeadm mode names in
// its ClusterConfiguration: kubeadm looks for
// <repository>/kube-apiserver:<version> and the others, and since the lab
// cannot pull, they must already be in containerd under exactly those names.
const KubeadmImageRepository = "localhost/gokube"

// KubeadmPauseVersion is the pause tag kubeadm v1.37.2's preflight expects
// under KubeadmImageRepository (its constants.PauseVersion); the role tags
// the locally built pause image with it.
const KubeadmPauseVersion = "3.10.2"

// ControlPlaneImages are the images kubeadm runs as static pods: one
// binary of the Kubernetes build each, at /usr/local/bin, named as kubeadm
// names them. kube-proxy is not among them: its image needs iptables, which
// a one-binary image lacks (the kubeadm mode disables that addon).
func ControlPlaneImages() []LabImage {
	var ims []LabImage
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		ims = append(ims, LabImage{
			Ref: KubeadmImageRepository + "/" + b + ":" + KubernetesVersion,
			Src: b,
			Bin: "/usr/local/bin/" + b,
			Rel: "images/" + b + "-" + KubernetesVersion + ".tar",
			Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		})
	}
	return ims
}

// BuildControlPlaneImages writes the control-plane images of the binaries
// in bins that the cache holds (BuildKubernetes made them) as OCI archives
// under dir/images, recorded in dir/SHA256SUMS. An archive whose
// SHA256SUMS entry matches is kept: its name carries the Kubernetes
// version, and the binaries of one version are reproducible, so the same
// name always holds the same bytes.
func BuildControlPlaneImages(ctx context.Context, dir string, bins []string, log io.Writer) error {
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	sumsPath := filepath.Join(dir, "SHA256SUMS")
	old, err := ReadSums(sumsPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control-plane images: %w", err)
	}
	sums := map[string]string{}
	for _, im := range ControlPlaneImages() {
		if !slices.Contains(bins, im.Src) {
			continue
		}
		dst := filepath.Join(dir, im.Rel)
		if want, ok := old[im.Rel]; ok {
			if got, err := fileSHA256(dst); err == nil && got == want {
				fmt.Fprintf(log, "cached %s\n", im.Rel)
				continue
			}
		}
		exe, err := os.ReadFile(filepath.Join(dir, "kubernetes", KubernetesVersion, im.Src))
		if err != nil {
			return fmt.Errorf("control-plane images: %w (build it with --kubernetes first)", err)
		}
		archive, err := ociArchive(im, exe)
		if err != nil {
			return fmt.Errorf("control-plane images: %s: %w", im.Ref, err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("control-plane images: %w", err)
		}
		if err := writeFileAtomic(dst, archive, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(archive)
		sums[im.Rel] = hex.EncodeToString(sum[:])
		fmt.Fprintf(log, "image %s in %s (%.1f MB)\n", im.Ref, dst, float64(len(archive))/1e6)
	}
	if len(sums) == 0 {
		return nil
	}
	return updateSums(sumsPath, sums)
}
