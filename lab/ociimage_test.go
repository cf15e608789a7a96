package lab

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
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
