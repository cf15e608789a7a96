package lab

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestHostAddrAllocation(t *testing.T) {
	p := netip.MustParsePrefix("10.231.0.0/24")
	if g := gatewayAddr(p).String(); g != "10.231.0.1" {
		t.Fatalf("gateway = %s", g)
	}
	seen := map[netip.Addr]int{gatewayAddr(p): 0}
	for i := 1; i <= maxHosts(p); i++ {
		a, err := hostAddr(p, i)
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		if !p.Contains(a) || a == lastAddr(p) {
			t.Fatalf("host %d: %s outside usable range", i, a)
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("host %d and %d share %s", i, j, a)
		}
		seen[a] = i
	}
	if a, _ := hostAddr(p, 1); a.String() != "10.231.0.11" {
		t.Fatalf("host 1 = %s, want 10.231.0.11", a)
	}
	if a, _ := hostAddr(p, 244); a.String() != "10.231.0.254" {
		t.Fatalf("host 244 = %s", a)
	}
	if _, err := hostAddr(p, 245); err == nil {
		t.Fatal("host 245 would be the broadcast address, want error")
	}
	if _, err := hostAddr(p, 0); err == nil {
		t.Fatal("host 0 accepted")
	}
	// A wider subnet carries over into the next octet.
	w := netip.MustParsePrefix("10.231.0.0/23")
	if a, _ := hostAddr(w, 250); a.String() != "10.231.1.4" {
		t.Fatalf("/23 host 250 = %s", a)
	}
}

func TestParseSubnet(t *testing.T) {
	for _, bad := range []string{"", "10.231.0.1/24", "fd00::/64", "10.0.0.0/30", "nonsense"} {
		if _, err := parseSubnet(bad); err == nil {
			t.Errorf("parseSubnet(%q) accepted", bad)
		}
	}
	if _, err := parseSubnet("10.231.0.0/24"); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []string{"", "a-b", "Gk", "1gk", "toolongname", "g k"} {
		if err := (Config{Name: bad, Subnet: DefaultSubnet}).validate(); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	for _, bad := range []string{"/a,b", "/a:b", "/a b"} {
		if err := (Config{Dir: bad}).withDefaults().validate(); err == nil {
			t.Errorf("dir %q accepted", bad)
		}
	}
	if c := (Config{Dir: "rel"}).withDefaults(); !filepath.IsAbs(c.Dir) {
		t.Errorf("relative dir kept: %s", c.Dir)
	}
	c := Config{}.withDefaults()
	if c.Name != "gk" || c.Dir != "/var/lib/gokube/lab/gk" || c.Subnet != DefaultSubnet {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
}

// Machine names of all hosts of several labs, and their veth names, must be
// distinct and never longer than the kernel allows: nspawn would cut them.
func TestMachineAndVethNamesUnique(t *testing.T) {
	labs := []string{"gk", "g", "gk1", "gk12", "a", "ab1", "t1", "t12", "abcdef"}
	seen := map[string]string{}
	for _, lab := range labs {
		for i := 1; i <= 99; i++ {
			m, err := machineName(lab, i)
			if err != nil {
				if len(lab) <= 6 {
					t.Fatalf("lab %s host %d: %v", lab, i, err)
				}
				continue
			}
			v := vethName(m)
			if len(v) > 15 {
				t.Fatalf("veth %q longer than 15", v)
			}
			who := lab + "/" + hostName(lab, i)
			if prev, dup := seen[v]; dup {
				t.Fatalf("veth %s for %s and %s", v, prev, who)
			}
			seen[v] = who
		}
		if b := bridgeName(lab); len(b) > 15 {
			t.Fatalf("bridge %q too long", b)
		}
	}
	if _, err := machineName("abcdefgh", 10); err == nil {
		t.Fatal("13-character machine name accepted")
	}
	if m, _ := machineName("gk", 7); m != "gk-gk-7" || vethName(m) != "vb-gk-gk-7" {
		t.Fatalf("names: %s", m)
	}
}

func TestBridgeMAC(t *testing.T) {
	a, b := bridgeMAC("gkbr-gk"), bridgeMAC("gkbr-t1")
	if a == b || a != bridgeMAC("gkbr-gk") {
		t.Fatalf("bridge MACs %s %s", a, b)
	}
	hw, err := net.ParseMAC(a)
	if err != nil || hw[0]&1 != 0 || hw[0]&2 == 0 {
		t.Fatalf("%s: want a locally administered unicast MAC (%v)", a, err)
	}
}

func TestRecipeHash(t *testing.T) {
	r := DefaultRecipe()
	h := r.Hash()
	if len(h) != 16 {
		t.Fatalf("hash %q", h)
	}
	// Order of packages does not matter; content does.
	r2 := DefaultRecipe()
	r2.Packages[0], r2.Packages[1] = r2.Packages[1], r2.Packages[0]
	if r2.Hash() != h {
		t.Fatal("package order changed the hash")
	}
	r3 := DefaultRecipe()
	r3.Packages = append(r3.Packages, "jq")
	if r3.Hash() == h {
		t.Fatal("added package kept the hash")
	}
	r4 := DefaultRecipe()
	r4.Setup += "\ntrue\n"
	if r4.Hash() == h {
		t.Fatal("changed setup kept the hash")
	}
	if !strings.HasSuffix(ImagePath("/x", r), "/x/"+h+"/rootfs") {
		t.Fatal(ImagePath("/x", r))
	}
}

func TestMirrorFromSources(t *testing.T) {
	deb822 := "Types: deb\n# http://old/archive\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
		"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
	if m := mirrorFromSources(deb822, true); m != "http://mirror.example/debian" {
		t.Fatalf("deb822: %q", m)
	}
	if m := mirrorFromSources("Types: deb-src\nURIs: http://src/\nSuites: bookworm\n", true); m != "" {
		t.Fatalf("deb-src used: %q", m)
	}
	one := "# comment\ndeb http://sec/ bookworm-security main\ndeb [arch=amd64 signed-by=/k] http://m/debian bookworm main\n"
	if m := mirrorFromSources(one, false); m != "http://m/debian" {
		t.Fatalf("one-line: %q", m)
	}
	if m := mirrorFromSources("deb https://other/apt cloud-sdk-bookworm main\n", false); m != "" {
		t.Fatalf("foreign suite used: %q", m)
	}
}

func TestParseGroups(t *testing.T) {
	gs, err := ParseGroups("etcd=1-3,kube-master=1-2,lb=4,6,workers=5-", 6)
	if err != nil {
		t.Fatal(err)
	}
	want := []Group{{"etcd", []int{1, 2, 3}}, {"kube-master", []int{1, 2}}, {"lb", []int{4, 6}}, {"workers", []int{5, 6}}}
	if len(gs) != len(want) {
		t.Fatalf("%+v", gs)
	}
	for i := range want {
		if gs[i].Name != want[i].Name || !equalInts(gs[i].Indexes, want[i].Indexes) {
			t.Fatalf("group %d: %+v, want %+v", i, gs[i], want[i])
		}
	}
	for _, bad := range []string{"1-3", "etcd=0", "etcd=3-1", "etcd=1-7", "etcd=x", "all=1", "a b=1", "etcd=1,etcd=2"} {
		if _, err := ParseGroups(bad, 6); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseGroups(f *testing.F) {
	for _, s := range []string{"etcd=1-3,kube-master=1-2", "a=1,2,3", "x=2-", "=", "a=1-,", "b=-1"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, spec string, n int) {
		if n < 0 || n > 300 {
			return
		}
		gs, err := ParseGroups(spec, n)
		if err != nil {
			return
		}
		for _, g := range gs {
			if !groupNameRE.MatchString(g.Name) {
				t.Fatalf("bad name %q", g.Name)
			}
			for _, i := range g.Indexes {
				if i < 1 || i > n {
					t.Fatalf("index %d out of 1..%d", i, n)
				}
			}
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRenderInventory(t *testing.T) {
	hosts := []Host{
		{Name: "gk-1", Index: 1, Addr: "10.231.0.11", SSHAddr: "10.231.0.11", SSHPort: 22},
		{Name: "gk-2", Index: 2, Addr: "10.231.0.12", SSHAddr: "10.231.0.1", SSHPort: 22002},
	}
	o := InventoryOptions{Lab: "gk", KeyPath: "/l/id_ed25519", KnownHosts: "/l/known_hosts",
		Groups: []Group{{"etcd", []int{1, 2}}, {"lb", []int{2}}}}
	got, err := RenderInventory(hosts, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"[all]\ngk-1 ansible_host=10.231.0.11 ip=10.231.0.11 ansible_user=deploy ansible_ssh_private_key_file=/l/id_ed25519 ansible_ssh_known_hosts_file=/l/known_hosts ansible_ssh_common_args='-o UserKnownHostsFile=/l/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes' ansible_become=true ansible_python_interpreter=/usr/bin/python3\n",
		"gk-2 ansible_host=10.231.0.1 ansible_port=22002 ip=10.231.0.12 ",
		"\n[etcd]\ngk-1\ngk-2\n",
		"\n[lb]\ngk-2\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("inventory lacks %q:\n%s", want, got)
		}
	}
	o.User = "root"
	got, _ = RenderInventory(hosts, o)
	if strings.Contains(got, "ansible_become") || !strings.Contains(got, "ansible_user=root") {
		t.Errorf("root inventory:\n%s", got)
	}
	o.Groups = []Group{{"x", []int{3}}}
	if _, err := RenderInventory(hosts, o); err == nil {
		t.Error("group with unknown host accepted")
	}
	o.Groups, o.KeyPath = nil, "/with space/key"
	if _, err := RenderInventory(hosts, o); err == nil {
		t.Error("path with space accepted")
	}
}

func TestKnownHostsRender(t *testing.T) {
	st := &state{Name: "gk", Subnet: DefaultSubnet, Hosts: []*hostState{{Name: "gk-1", Index: 1, Addr: "10.231.0.11", HostKey: "ssh-ed25519 AAAA root@gk-1"}}}
	hosts := []Host{{Name: "gk-1", Index: 1, Addr: "10.231.0.11", SSHAddr: "10.231.0.1", SSHPort: 22001}}
	got := renderKnownHosts(st, hosts)
	for _, want := range []string{"\ngk-1,10.231.0.11 ssh-ed25519 AAAA root@gk-1\n", "\n[10.231.0.1]:22001 ssh-ed25519 AAAA root@gk-1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("known_hosts lacks %q:\n%s", want, got)
		}
	}
}

func TestKeyPair(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "id_ed25519")
	pub, err := ensureKey(p, "c")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v %v", fi.Mode(), err)
	}
	priv, _ := os.ReadFile(p)
	s, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))); !strings.HasPrefix(pub, got+" ") {
		t.Fatalf("pub %q does not match private key %q", pub, got)
	}
	again, err := ensureKey(p, "c")
	if err != nil || again != pub {
		t.Fatalf("second ensureKey made a new key: %v", err)
	}
	if out, err := exec.Command("ssh-keygen", "-y", "-f", p).Output(); err == nil {
		if !strings.HasPrefix(pub, strings.TrimSpace(string(out))) {
			t.Fatalf("ssh-keygen reads a different key: %s", out)
		}
	}
}

func TestProcTracking(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := procOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("fresh process not alive")
	}
	// Same PID, other start time: not ours, never signalled.
	other := Proc{PID: p.PID, Start: p.Start + 1}
	if other.Alive() {
		t.Fatal("start time mismatch counted as alive")
	}
	if err := other.Signal(9); err != nil || !p.Alive() {
		t.Fatal("signalled a process whose start time differs")
	}
	if err := p.Signal(15); err != nil {
		t.Fatal(err)
	}
	if !p.Wait(context.Background(), 5*time.Second) {
		t.Fatal("process still alive after SIGTERM")
	}
	_ = cmd.Wait()
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c\134d`); got != `/a b/c\d` {
		t.Fatalf("%q", got)
	}
}

func TestReadSums(t *testing.T) {
	p := filepath.Join(t.TempDir(), "SHA256SUMS")
	sum := strings.Repeat("ab", 32)
	if err := os.WriteFile(p, []byte(sum+"  etcd/v3.4.23/etcd\n\n"+sum+" *x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSums(p); err == nil {
		t.Fatal("single-space line accepted")
	}
	if err := os.WriteFile(p, []byte(sum+"  etcd/v3.4.23/etcd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ReadSums(p)
	if err != nil || m["etcd/v3.4.23/etcd"] != sum {
		t.Fatalf("%v %v", m, err)
	}
}

// The forwarder must pass every byte both ways, keep half-closes, and a
// round trip through it can never be quicker than twice the delay.
func TestDelayProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDelayProxy(ctx, 20*time.Millisecond, []string{listen + "=" + echo.Addr().String()}) }()
	var c net.Conn
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", listen); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	t0 := time.Now()
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 40*time.Millisecond {
		t.Fatalf("round trip through a 20ms forwarder took %s", el)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, want %d identical", len(got), len(payload))
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := RunDelayProxy(context.Background(), time.Millisecond, []string{"nomapping"}); err == nil {
		t.Fatal("bad mapping accepted")
	}
}

func TestRunsMachine(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{"systemd-nspawn", "--register=no", "-D", "/r", "-M", "gk-a-1"}, true},
		{[]string{"/usr/bin/systemd-nspawn", "--machine=gk-a-1"}, true},
		{[]string{"/bin/sh", "-c", "echo $$ > x && exec \"$0\" \"$@\"", "systemd-nspawn", "-M", "gk-a-1"}, true},
		{[]string{"systemd-nspawn", "-M", "gk-a-10"}, false},
		{[]string{"systemd-nspawn", "-M"}, false},
		{[]string{"sleep", "-M", "gk-a-1"}, false},
	} {
		if got := runsMachine(c.argv, "gk-a-1"); got != c.want {
			t.Errorf("runsMachine(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}
