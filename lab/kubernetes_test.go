package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gokube/internal/testskip"
)

const (
	sumA = "a45de16600eafc57939b84013b0522c4670435471eb4073dd963d01e0eb5a217"
	sumB = "b38b6112aaa3d6056e4cd39d2f9769d84c9ae1fd729513ab473ee66f597d8934"
	sumC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	sumD = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
)

func TestMergeSums(t *testing.T) {
	etcd := sumA + "  etcd/v3.4.23/etcd\n" + sumB + "  etcd/v3.4.23/etcdctl\n"
	for _, tc := range []struct {
		name, old string
		set       map[string]string
		want      string
		wantErr   string
	}{
		{
			name: "empty file",
			set:  map[string]string{"kubernetes/v1.37.2/kubectl": sumC},
			want: sumC + "  kubernetes/v1.37.2/kubectl\n",
		},
		{
			name: "etcd lines kept, new lines sorted in",
			old:  etcd,
			set:  map[string]string{"kubernetes/v1.37.2/kubelet": sumD, "kubernetes/v1.37.2/kubectl": sumC},
			want: etcd + sumC + "  kubernetes/v1.37.2/kubectl\n" + sumD + "  kubernetes/v1.37.2/kubelet\n",
		},
		{
			name: "existing entry replaced, not duplicated",
			old:  etcd + sumC + "  kubernetes/v1.37.2/kubectl\n",
			set:  map[string]string{"kubernetes/v1.37.2/kubectl": sumD},
			want: etcd + sumD + "  kubernetes/v1.37.2/kubectl\n",
		},
		{
			name: "binary-mode marker, blank lines and CRLF read",
			old:  sumA + " *etcd/v3.4.23/etcd\r\n\n",
			set:  map[string]string{"kubernetes/v1.37.2/kubectl": sumC},
			want: sumA + "  etcd/v3.4.23/etcd\n" + sumC + "  kubernetes/v1.37.2/kubectl\n",
		},
		{
			name:    "malformed line names its line",
			old:     etcd + "not a sum line\n",
			set:     map[string]string{"kubernetes/v1.37.2/kubectl": sumC},
			wantErr: "SHA256SUMS:3:",
		},
		{
			name:    "short hash rejected",
			old:     "abc  etcd/v3.4.23/etcd\n",
			wantErr: "SHA256SUMS:1:",
		},
		{
			name:    "bad new entry rejected",
			set:     map[string]string{"kubernetes/v1.37.2/kubectl": "xyz"},
			wantErr: "bad entry",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mergeSums("SHA256SUMS", []byte(tc.old), tc.set)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			// What Artifacts' reader sees must agree with what we wrote.
			p := filepath.Join(t.TempDir(), "SHA256SUMS")
			if err := os.WriteFile(p, got, 0o644); err != nil {
				t.Fatal(err)
			}
			sums, err := ReadSums(p)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.set {
				if sums[k] != v {
					t.Errorf("ReadSums[%s] = %q, want %q", k, sums[k], v)
				}
			}
		})
	}
}

func TestKubernetesLDFlags(t *testing.T) {
	f := kubernetesLDFlags()
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
		"-X k8s.io/component-base/version.gitMajor=1 ",
		"-X k8s.io/component-base/version.gitMinor=37 ",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + KubernetesVersion,
	} {
		if !strings.Contains(f+" ", want) {
			t.Errorf("ldflags %q lack %q", f, want)
		}
	}
}

// TestKubernetesToolsPinned checks that tools/k8s/go.mod pins the version
// this package stamps, and replaces every staging module (they resolve to
// v0.0.0 otherwise and the build fails).
func TestKubernetesToolsPinned(t *testing.T) {
	b, err := os.ReadFile("../tools/k8s/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod := string(b)
	if !strings.Contains(mod, "require k8s.io/kubernetes "+KubernetesVersion+"\n") {
		t.Errorf("tools/k8s/go.mod does not require k8s.io/kubernetes %s", KubernetesVersion)
	}
	staging := strings.Replace(KubernetesVersion, "v1.", "v0.", 1)
	for _, m := range []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/component-base", "k8s.io/kubectl", "k8s.io/kubelet"} {
		if !strings.Contains(mod, "\t"+m+" => "+m+" "+staging+"\n") {
			t.Errorf("tools/k8s/go.mod lacks replace %s => %s %s", m, m, staging)
		}
	}
}

func TestFindKubernetesTools(t *testing.T) {
	root := t.TempDir()
	tools := filepath.Join(root, "tools", "k8s")
	deep := filepath.Join(root, "a", "b")
	for _, d := range []string{tools, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A go.mod of another module is not taken for it.
	if err := os.WriteFile(filepath.Join(tools, "go.mod"), []byte("module other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)
	if got, err := FindKubernetesTools(); err == nil && got == tools {
		t.Fatalf("found %s although its module is not %s", got, kubernetesToolsModule)
	}
	if err := os.WriteFile(filepath.Join(tools, "go.mod"), []byte("// c\nmodule "+kubernetesToolsModule+"\n\ngo 1.26.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := FindKubernetesTools()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(tools); got != tools && got != want {
		t.Fatalf("FindKubernetesTools = %s, want %s", got, tools)
	}
}

func kubernetesToolsDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../tools/k8s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBuildKubectl builds kubectl from the module proxy into an empty cache
// (minutes when the Go build cache is cold), checks what the binary reports
// and what SHA256SUMS says, then that a second run keeps it, and that a
// damaged binary is rebuilt. make test sets GOKUBE_K8S_BUILD=1 after
// k8s-artifacts has built kubectl, so Go's build cache is warm (~25 s).
func TestBuildKubectl(t *testing.T) {
	if os.Getenv("GOKUBE_K8S_BUILD") != "1" {
		testskip.Skip(t, "set GOKUBE_K8S_BUILD=1 to build kubectl from the module proxy (minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	dir := t.TempDir()
	etcdLine := sumA + "  etcd/v3.4.23/etcd\n"
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(etcdLine), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	start := time.Now()
	if err := buildKubernetes(ctx, dir, kubernetesToolsDir(t), []string{"kubectl"}, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("first build: %s\n%s", time.Since(start).Round(time.Second), log.String())

	bin := filepath.Join(dir, "kubernetes", KubernetesVersion, "kubectl")
	out, err := exec.CommandContext(ctx, bin, "version", "--client").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl version --client: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "Client Version: "+KubernetesVersion) {
		t.Fatalf("kubectl version --client printed %q, want Client Version: %s", out, KubernetesVersion)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("kubectl mode: %v %v", fi, err)
	}
	checkSums := func() {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := fileSHA256(bin)
		if err != nil {
			t.Fatal(err)
		}
		want := etcdLine + h + "  kubernetes/" + KubernetesVersion + "/kubectl\n"
		if string(b) != want {
			t.Fatalf("SHA256SUMS:\n%s\nwant:\n%s", b, want)
		}
	}
	checkSums()
	if left, _ := filepath.Glob(filepath.Join(dir, ".kubernetes-build-*")); len(left) != 0 {
		t.Fatalf("build directories left behind: %v", left)
	}

	// Cached: nothing is built, the file is not replaced.
	before, _ := os.Stat(bin)
	log.Reset()
	if err := buildKubernetes(ctx, dir, kubernetesToolsDir(t), []string{"kubectl"}, &log); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(bin)
	if !strings.Contains(log.String(), "cached kubernetes/"+KubernetesVersion+"/kubectl") || strings.Contains(log.String(), "building") || !os.SameFile(before, after) {
		t.Fatalf("second run rebuilt kubectl:\n%s", log.String())
	}

	// A binary that no longer matches its sum is rebuilt.
	f, err := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	log.Reset()
	start = time.Now()
	if err := buildKubernetes(ctx, dir, kubernetesToolsDir(t), []string{"kubectl"}, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("rebuild of a damaged kubectl: %s", time.Since(start).Round(time.Second))
	if !strings.Contains(log.String(), "building") {
		t.Fatalf("damaged kubectl not rebuilt:\n%s", log.String())
	}
	checkSums()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
