package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The archive is what `ctr images import` reads: an OCI layout whose index
// names the image and whose blobs are the manifest, config and layer it
// points to. Same inputs, same bytes.
func TestOCIArchive(t *testing.T) {
	im := LabImage{Ref: "localhost/gokube/pause:1", Bin: "/pause"}
	a, err := ociArchive(im, []byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ociArchive(im, []byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same image differ")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != im.Ref {
		t.Fatalf("index: %s", files["index.json"])
	}
	var man struct {
		Config ociDescriptor   `json:"config"`
		Layers []ociDescriptor `json:"layers"`
	}
	if err := json.Unmarshal(files["blobs/sha256/"+index.Manifests[0].Digest[7:]], &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Layers) != 1 {
		t.Fatalf("manifest: %+v", man)
	}
	for _, d := range []ociDescriptor{man.Config, man.Layers[0]} {
		if got := files["blobs/sha256/"+d.Digest[7:]]; int64(len(got)) != d.Size {
			t.Errorf("blob %s: %d bytes, descriptor says %d", d.Digest, len(got), d.Size)
		}
	}
	lr := tar.NewReader(bytes.NewReader(files["blobs/sha256/"+man.Layers[0].Digest[7:]]))
	h, err := lr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(lr); h.Name != "pause" || h.Mode != 0o755 || string(body) != "binary" {
		t.Errorf("layer: %s mode %o %q", h.Name, h.Mode, body)
	}
}

// The control-plane images: one per binary the cache holds, named as
// kubeadm looks for them, with PATH set (a static pod names its command),
// recorded in SHA256SUMS, and not rewritten when they match it.
func TestBuildControlPlaneImages(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubernetes", KubernetesVersion)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"kube-apiserver", "kube-scheduler"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("exe of "+b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	if err := BuildControlPlaneImages(context.Background(), dir, []string{"kube-apiserver", "kube-scheduler"}, &log); err != nil {
		t.Fatal(err)
	}
	sums, err := ReadSums(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 {
		t.Fatalf("SHA256SUMS: %v", sums)
	}
	for _, im := range ControlPlaneImages() {
		_, err := os.Stat(filepath.Join(dir, im.Rel))
		if want := im.Src != "kube-controller-manager"; (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", im.Rel, err == nil, want)
		}
	}
	if got := ControlPlaneImages()[0].Ref; got != "localhost/gokube/kube-apiserver:"+KubernetesVersion {
		t.Errorf("ref %s", got)
	}
	a, err := ociArchive(ControlPlaneImages()[0], []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(a, []byte(`"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]`)) || !bytes.Contains(a, []byte("usr/local/bin/kube-apiserver")) {
		t.Error("the apiserver image has no PATH or no binary at /usr/local/bin")
	}
	log.Reset()
	if err := BuildControlPlaneImages(context.Background(), dir, []string{"kube-apiserver", "kube-scheduler"}, &log); err != nil {
		t.Fatal(err)
	}
	if strings.Count(log.String(), "cached images/") != 2 {
		t.Errorf("second build: %s", log.String())
	}
}
