package engine

import (
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

func TestFactsAndMagicVars(t *testing.T) {
	e := newEnv(t, "[etcd]\nnode-1 ansible_host=192.0.2.1\nnode-2\n[kube:children]\netcd\n", map[string]string{"site.yml": `
- hosts: etcd
  tasks:
    - name: facts
      debug:
        msg: "{{ .ansible_hostname }} {{ .ansible_default_ipv4.address }} {{ .ansible_os_family }} {{ .ansible_processor_vcpus }} {{ .ansible_memtotal_mb }} {{ .ansible_service_mgr }} {{ .ansible_facts.distribution_version }}"
      register: f
    - name: magic
      debug:
        msg: "{{ .inventory_hostname }} {{ join \",\" .group_names }} {{ join \",\" .play_hosts }} {{ groupIndex \"etcd\" }} {{ inGroup \"kube\" }} {{ ipOf \"node-1\" }} {{ ipOf \"node-2\" }} {{ hostvar \"node-1\" \"ansible_host\" }} {{ index .hostvars \"node-2\" \"inventory_hostname\" }}"
      register: m
    - name: native
      debug: {msg: "{{ hostsOf \"etcd\" }}"}
      register: n
`})
	r := mustRun(t, e, e.opts("site.yml"))
	f := r.Vars["node-2"]["f"].(map[string]any)["msg"]
	if !regexp.MustCompile(`^node-2 10\.0\.0\.\d Debian 2 2000 systemd 12$`).MatchString(fmt.Sprint(f)) {
		t.Fatalf("facts: %q", f)
	}
	m := fmt.Sprint(r.Vars["node-2"]["m"].(map[string]any)["msg"])
	if !strings.HasPrefix(m, "node-2 etcd,kube node-1,node-2 1 true 192.0.2.1 10.0.0.") || !strings.Contains(m, " 192.0.2.1 ") {
		t.Fatalf("magic: %q", m)
	}
	if n := r.Vars["node-1"]["n"].(map[string]any)["msg"]; !reflect.DeepEqual(n, []string{"node-1", "node-2"}) {
		t.Fatalf("native list: %#v", n)
	}
}

func TestParseFacts(t *testing.T) {
	f := parseFacts(strings.NewReplacer("HOST", "n1.example", "IDX", "7").Replace(fakeFacts))
	if f["ansible_hostname"] != "n1" || f["ansible_fqdn"] != "n1.example.example.internal" {
		t.Fatalf("names: %v %v", f["ansible_hostname"], f["ansible_fqdn"])
	}
	def := f["ansible_default_ipv4"].(map[string]any)
	if def["address"] != "10.0.0.7" || def["gateway"] != "10.0.0.1" || def["interface"] != "eth0" {
		t.Fatalf("default ipv4 %v", def)
	}
	if !reflect.DeepEqual(f["ansible_all_ipv4_addresses"], []any{"10.0.0.7"}) {
		t.Fatalf("all ipv4 %v", f["ansible_all_ipv4_addresses"])
	}
	if f["ansible_distribution"] != "Debian" || f["ansible_distribution_major_version"] != "12" || f["ansible_memtotal_mb"] != 2000 {
		t.Fatalf("distro %v", f)
	}
}

// TestFactsScriptBuiltins runs the facts script in the local /bin/sh (dash
// on Debian, as on the hosts) with no program on PATH: every fact but the
// FQDN, the addresses and the default route must still be there, so they
// cost no process on a host; with PATH back, those come from ip and
// hostname -f as well.
func TestFactsScriptBuiltins(t *testing.T) {
	run := func(path string) map[string]any {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", factsScript)
		cmd.Env = []string{"PATH=" + path}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("facts script (PATH=%s): %v", path, err)
		}
		return parseFacts(string(out))
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	str := func(b [65]int8) string {
		var s []byte
		for _, c := range b {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		return string(s)
	}
	host, _ := os.Hostname()
	short, _, _ := strings.Cut(host, ".")
	for _, path := range []string{"/nonexistent", os.Getenv("PATH")} {
		f := run(path)
		want := map[string]any{
			"ansible_hostname":        short,
			"ansible_kernel":          str(u.Release),
			"ansible_architecture":    str(u.Machine),
			"ansible_processor_vcpus": runtime.NumCPU(),
			"ansible_system":          "Linux",
		}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("PATH=%s: %s = %v, want %v", path, k, f[k], v)
			}
		}
		// The test machine's init varies: any name read from /proc/1/comm.
		if f["ansible_distribution"] == "" || f["ansible_memtotal_mb"] == nil || f["ansible_service_mgr"] == "unknown" {
			t.Errorf("PATH=%s: os-release, meminfo or init missing: %v", path, f)
		}
		if path != "/nonexistent" {
			def := f["ansible_default_ipv4"].(map[string]any)
			if len(f["ansible_all_ipv4_addresses"].([]any)) == 0 || def["interface"] == nil || def["address"] == "" {
				t.Errorf("with ip: addresses %v, default %v", f["ansible_all_ipv4_addresses"], def)
			}
		}
	}
}

func TestCPUListCount(t *testing.T) {
	for in, want := range map[string]int{"cpus 0-1": 2, "cpus 0": 1, "cpus 0-3,6,8-9": 7, "cpus \t0-1": 2, "2": 0, "cpus x": 0, "cpus 3-1": 0} {
		if n, _ := cpuListCount(in); n != want {
			t.Errorf("%q: %d, want %d", in, n, want)
		}
	}
}
