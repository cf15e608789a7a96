package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// The lab's hosts cannot pull images, so the images a kubelet needs (the
// pod sandbox's pause and one test workload) are built here, in Go, as OCI
// image archives that `ctr images import` reads: one static binary per
// image, one layer, no base image.

//go:embed imagesrc
var imageSources embed.FS

// LabImage is one image the artifact cache holds.
type LabImage struct {
	// Ref is the image's name in containerd (no registry is ever asked:
	// pods use imagePullPolicy Never, the sandbox image is configured).
	Ref string
	// Src is the program's directory under imagesrc; Bin its path in the
	// image and its entrypoint.
	Src, Bin string
	// Rel is the archive's path in the artifact cache.
	Rel string
	// Env is the image's environment (a control-plane image needs PATH:
	// kubeadm's static pods name their command, not its path).
	Env []string
}

// LabImages are the images BuildImages makes.
func LabImages() []LabImage {
	return []LabImage{
		{Ref: "localhost/gokube/pause:1", Src: "pause", Bin: "/pause", Rel: "images/pause.tar"},
		{Ref: "localhost/gokube/hello:1", Src: "hello", Bin: "/hello", Rel: "images/hello.tar"},
	}
}

// imageEpoch is every file's and the image's time, so a rebuild from the
// same sources and toolchain gives the same archive.
var imageEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// BuildImages builds the lab images' binaries with the go command and
// writes their archives into dir, recording them in dir/SHA256SUMS.
func BuildImages(ctx context.Context, dir string, log io.Writer) error {
	goCmd, err := findGo()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	// The cache's lock: SHA256SUMS is rewritten by every artifact builder.
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	tmp, err := os.MkdirTemp("", "gokube-images-")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	sums := map[string]string{}
	for _, im := range LabImages() {
		src, err := imageSources.ReadFile("imagesrc/" + im.Src + "/main.go.txt")
		if err != nil {
			return fmt.Errorf("images: %s: %w", im.Src, err)
		}
		mod := filepath.Join(tmp, im.Src)
		if err := os.MkdirAll(mod, 0o755); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if err := os.WriteFile(filepath.Join(mod, "main.go"), src, 0o644); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module "+im.Src+"\n\ngo 1.22\n"), 0o644); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		bin := filepath.Join(tmp, im.Src+".bin")
		if err := goBuild(ctx, goCmd, mod, ".", "-s -w", bin, nil, log); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		exe, err := os.ReadFile(bin)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		archive, err := ociArchive(im, exe)
		if err != nil {
			return fmt.Errorf("images: %s: %w", im.Ref, err)
		}
		dst := filepath.Join(dir, im.Rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if err := writeFileAtomic(dst, archive, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(archive)
		sums[im.Rel] = hex.EncodeToString(sum[:])
		fmt.Fprintf(log, "image %s in %s (%d bytes)\n", im.Ref, dst, len(archive))
	}
	return updateSums(filepath.Join(dir, "SHA256SUMS"), sums)
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ociArchive is an OCI image layout, as a tar, holding one image whose
// single layer is exe at im.Bin.
func ociArchive(im LabImage, exe []byte) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: im.Bin[1:], Mode: 0o755, Size: int64(len(exe)), ModTime: imageEpoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := lw.Write(exe); err != nil {
		return nil, err
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, b []byte) ociDescriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = b
		return ociDescriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	}
	layerDesc := add("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"created":      imageEpoch,
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       imageConfig(im),
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return nil, err
	}
	configDesc := add("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []ociDescriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manDesc := add("application/vnd.oci.image.manifest.v1+json", manifest)
	manDesc.Annotations = map[string]string{
		// containerd names the imported image after this one.
		"io.containerd.image.name":          im.Ref,
		"org.opencontainers.image.ref.name": im.Ref,
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []ociDescriptor{manDesc},
	})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: imageEpoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := file("index.json", index); err != nil {
		return nil, err
	}
	// Blobs in a fixed order: the archive's bytes depend on its inputs only.
	for _, d := range []ociDescriptor{layerDesc, configDesc, manDesc} {
		h := d.Digest[len("sha256:"):]
		if err := file("blobs/sha256/"+h, blobs[h]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// imageConfig is the runtime part of an image's configuration. Env is left
// out when empty so the pause and test images keep their digests.
func imageConfig(im LabImage) map[string]any {
	c := map[string]any{"Entrypoint": []string{im.Bin}}
	if len(im.Env) > 0 {
		c["Env"] = im.Env
	}
	return c
}
