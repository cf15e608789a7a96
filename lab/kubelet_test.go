package lab

import (
	"strings"
	"testing"
)

// The unit binds every sysctl the kubelet checks, from the directory the
// lab writes, and remounts every v1 controller but name=systemd and the
// unified one.
func TestKubeletUnit(t *testing.T) {
	u := kubeletUnitText()
	for k := range kubeletSysctls {
		line := "ExecStart=/bin/mount --bind -o ro /" + kubeletSysctlDir + "/" + strings.ReplaceAll(k, "/", ".") + " /proc/sys/" + k + "\n"
		if !strings.Contains(u, line) {
			t.Errorf("unit lacks %q", line)
		}
	}
	for _, want := range []string{"mount -o remount,bind,rw", "*/systemd/|*/unified/) ;;", "Before=sysinit.target containerd.service kubelet.service"} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}

// up --kubelet names hosts of the lab; anything else is refused before a
// host is touched.
func TestKubeletHostsChecked(t *testing.T) {
	l, err := New(Config{Name: "kt", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{0, 4} {
		l.KubeletHosts = []int{bad}
		if _, err := l.checkUp(3); err == nil || !strings.Contains(err.Error(), "kubelet host") {
			t.Errorf("kubelet host %d of 3: err %v", bad, err)
		}
	}
}
