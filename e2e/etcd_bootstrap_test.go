package e2e

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// etcdMemberURLs lists the members (name -> peer URLs) that the member at
// addr reports, read with curl.
func etcdMemberURLs(t *testing.T, pki, addr string) map[string][]string {
	t.Helper()
	out, err := curlEtcd(pki, addr, "/v3/cluster/member/list", "{}", true)
	if err != nil {
		t.Fatalf("%s member list: %v %s", addr, err, out)
	}
	var ml struct {
		Members []struct {
			Name     string   `json:"name"`
			PeerURLs []string `json:"peerURLs"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &ml); err != nil {
		t.Fatalf("%s member list: %v %s", addr, err, out)
	}
	m := map[string][]string{}
	for _, x := range ml.Members {
		m[x.Name] = x.PeerURLs
	}
	return m
}

// etcdPut writes a key on the member at addr through its JSON gateway.
func etcdPut(pki, addr, key, value string) error {
	b, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key)), "value": base64.StdEncoding.EncodeToString([]byte(value))})
	out, err := curlEtcd(pki, addr, "/v3/kv/put", string(b), true)
	if err != nil || !strings.Contains(out, `"header"`) {
		return fmt.Errorf("put %s on %s: %v %s", key, addr, err, out)
	}
	return nil
}

// etcdCount counts the keys under prefix on the member at addr.
func etcdCount(t *testing.T, pki, addr, prefix string) string {
	t.Helper()
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	b, _ := json.Marshal(map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(prefix)), "range_end": base64.StdEncoding.EncodeToString([]byte(end)), "count_only": true})
	out, err := curlEtcd(pki, addr, "/v3/kv/range", string(b), true)
	if err != nil {
		t.Fatalf("count %s: %v %s", prefix, err, out)
	}
	var r struct {
		Count string `json:"count"`
	}
	_ = json.Unmarshal([]byte(out), &r)
	if r.Count == "" {
		return "0"
	}
	return r.Count
}

// TestEtcdBootstrapModes: the recipe's discovery and DNS bootstraps, each a
// healthy 3-member TLS cluster on both etcd releases (3.7.0 with the v3
// discovery protocol and client certificates, 3.4.23 with the v2 discovery
// URL on the discovery cluster's plain-HTTP listener). Host 1 is the
// existing cluster that serves discovery (etcd 3.4 with the v2 API) and,
// for the DNS mode, the dnsmasq that serves the SRV records; hosts 2-4 are
// the new cluster; host 5 gets a bootstrap that fails for real, which the
// next run explains instead of starting again.
func TestEtcdBootstrapModes(t *testing.T) {
	e := setupN(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e.resetHosts(t, ctx, 1, 2, 3, 4, 5)
	work := t.TempDir()
	copyTree(t, filepath.Join(e.root, "examples/etcd-cluster"), work)
	pki := filepath.Join(work, "pki")
	playbook := filepath.Join(work, "etcd.yml")
	addr := func(i int) string { return e.lab.Hosts()[i-1].Addr }
	// One inventory file per cluster, in one directory: they share the
	// control machine's pki (one CA, so the new members' client
	// certificate is good on the discovery cluster).
	inventory := func(name, prefix string, groups map[string][]int) string {
		p := e.inventory(t, work, prefix, groups)
		dst := filepath.Join(work, name+".cfg")
		if err := os.Rename(p, dst); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	disc := inventory("disc", "dc", map[string][]int{"etcd": {1}})
	discURL := "https://" + addr(1) + ":2379"
	plainURL := "http://" + addr(1) + ":2381"

	start := time.Now()
	r := e.play(t, ctx, "-i", disc, playbook, "-e", "etcd_version=3.4.23", "-e", "etcd_enable_v2=true",
		"-e", "etcd_listen_client_plain_url="+plainURL, "-e", "etcd_cluster_token=discovery-service")
	if r.code != 0 || !strings.Contains(r.out, "1/1 members healthy") {
		t.Fatalf("discovery cluster: exit %d\n%s", r.code, tail(r.out, 60))
	}
	t.Logf("discovery cluster on host 1: %s", time.Since(start).Round(time.Second))

	// bootstrap runs the example's etcd.yml for hosts 2-4 with extra
	// settings and checks the cluster with curl: 3 members, each named,
	// healthy and at the wanted version.
	bootstrap := func(t *testing.T, prefix, version string, groups map[string][]int, extra ...string) string {
		t.Helper()
		start := time.Now()
		inv := inventory(prefix, prefix, groups)
		args := append([]string{"-i", inv, playbook, "-e", "etcd_version=" + version}, extra...)
		r := e.play(t, ctx, args...)
		if r.code != 0 || !strings.Contains(r.out, "3/3 members healthy") {
			t.Fatalf("bootstrap: exit %d\n%s", r.code, tail(r.out, 80))
		}
		for i := 2; i <= 4; i++ {
			out, err := curlEtcd(pki, addr(i), "/version", "", true)
			if err != nil || !strings.Contains(out, `"etcdserver":"`+version+`"`) {
				t.Errorf("host %d /version: want %s: %v %s", i, version, err, out)
			}
			if out, err := curlEtcd(pki, addr(i), "/health", "", true); err != nil || !strings.Contains(out, `"health":"true"`) {
				t.Errorf("host %d /health: %v %s", i, err, out)
			}
		}
		if ms := etcdMemberURLs(t, pki, addr(2)); len(ms) != 3 {
			t.Errorf("members: %v", ms)
		}
		r = e.play(t, ctx, args...)
		for i := 2; i <= 4; i++ {
			if rc := r.recap[fmt.Sprintf("%s-%d", prefix, i)]; r.code != 0 || rc.changed != 0 {
				t.Errorf("second run: exit %d, %s-%d %+v\n%s", r.code, prefix, i, rc, tail(r.out, 40))
			}
		}
		t.Logf("%s on etcd %s: bootstrap and second run %s", prefix, version, time.Since(start).Round(time.Second))
		return inv
	}
	// The DNS server host is in the inventory (the role configures it) but
	// not in [etcd].
	members, withDNS := map[string][]int{"etcd": {2, 3, 4}}, map[string][]int{"etcd": {2, 3, 4}, "dns": {1}}
	// wipe removes etcd from hosts 2-4 between modes (much cheaper than
	// fresh disks; the outer resetHosts gives them fresh ones at the end).
	wipe := func(t *testing.T) {
		t.Helper()
		for i := 2; i <= 4; i++ {
			if out, err := e.ssh(t, i, "systemctl stop etcd; systemctl reset-failed etcd; rm -rf /var/lib/etcd /etc/etcd /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /etc/systemd/system/etcd.service && systemctl daemon-reload"); err != nil {
				t.Fatalf("wipe host %d: %v %s", i, err, out)
			}
		}
	}
	// journal: etcd's log on host i, since since, says want.
	journal := func(t *testing.T, i int, since time.Time, want string) {
		t.Helper()
		if out, _ := e.ssh(t, i, fmt.Sprintf("journalctl -u etcd --no-pager --since @%d | grep -c -F '%s'", since.Unix(), want)); strings.TrimSpace(out) == "0" || out == "" {
			t.Errorf("host %d: etcd's log never says %q", i, want)
		}
	}

	t.Run("v3 discovery, etcd 3.7", func(t *testing.T) {
		since := time.Now()
		bootstrap(t, "dv3", "3.7.0", members, "-e", "etcd_bootstrap=discovery", "-e", "etcd_discovery_endpoints="+discURL, "-e", "etcd_discovery_token=dv3")
		journal(t, 2, since, "Bootstrapping cluster using v3 discovery")
		// The token on the discovery cluster: its size, and the three
		// members that registered in it.
		if n := etcdCount(t, pki, addr(1), "/_etcd/registry/dv3/members/"); n != "3" {
			t.Errorf("registered in token dv3: %s, want 3", n)
		}
	})

	t.Run("a failed bootstrap is explained, not repeated", func(t *testing.T) {
		// Someone else's member fills the token of size 1 first: etcd on
		// host 5 finds the cluster full and exits.
		if err := etcdPut(pki, addr(1), "/_etcd/registry/hb/_config/size", "1"); err != nil {
			t.Fatal(err)
		}
		if err := etcdPut(pki, addr(1), "/_etcd/registry/hb/members/1d2c3b4a", "ghost=https://10.0.0.99:2380"); err != nil {
			t.Fatal(err)
		}
		inv := inventory("hb", "hb", map[string][]int{"etcd": {5}})
		args := []string{"-i", inv, playbook, "-e", "etcd_bootstrap=discovery", "-e", "etcd_discovery_endpoints=" + discURL}
		r := e.play(t, ctx, append(args, "-e", "etcd_discovery_token=hb", "-e", "etcd_health_retries=8")...)
		if r.code == 0 {
			t.Fatalf("bootstrap into a full token passed\n%s", tail(r.out, 40))
		}
		waitFor(t, "etcd on host 5 restarted by systemd", 2*time.Minute, func() error {
			out, err := e.ssh(t, 5, "systemctl show -p NRestarts --value etcd; ls /var/lib/etcd/member")
			if err != nil || strings.HasPrefix(out, "0\n") || strings.Contains(out, "wal") {
				return fmt.Errorf("%v %q", err, out)
			}
			return nil
		})
		r = e.play(t, ctx, append(args, "-e", "etcd_discovery_token=hb")...)
		if r.code != 2 || !strings.Contains(r.out, "holds no write-ahead log") || !strings.Contains(r.out, "with a new etcd_discovery_token") {
			t.Fatalf("rerun: exit %d, want 2 and the explanation\n%s", r.code, tail(r.out, 40))
		}
		t.Logf("explanation: %s", grepLines(r.out, "holds no write-ahead"))
		// The recovery the message gives works.
		if out, err := e.ssh(t, 5, "systemctl stop etcd && mv /var/lib/etcd/member /var/lib/etcd/member.failed"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		r = e.play(t, ctx, append(args, "-e", "etcd_discovery_token=hb-2")...)
		if r.code != 0 || !strings.Contains(r.out, "1/1 members healthy") {
			t.Fatalf("after the recovery: exit %d\n%s", r.code, tail(r.out, 40))
		}
	})

	t.Run("DNS SRV, etcd 3.7", func(t *testing.T) {
		wipe(t)
		bootstrap(t, "ns", "3.7.0", withDNS, "-e", "etcd_bootstrap=dns", "-e", "etcd_dns_domain=etcd.gokube.test", "-e", "etcd_dns_server=ns-1")
		checkDNSCluster(t, e, pki, "ns")
	})

	t.Run("v2 discovery, etcd 3.4", func(t *testing.T) {
		wipe(t)
		// An https:// discovery endpoint for 3.4 members is refused before
		// any host changes, with the reason.
		inv := inventory("dv2", "dv2", map[string][]int{"etcd": {2, 3, 4}})
		r := e.play(t, ctx, "-i", inv, playbook, "-e", "etcd_version=3.4.23", "-e", "etcd_bootstrap=discovery", "-e", "etcd_discovery_endpoints="+discURL)
		if r.code != 2 || !strings.Contains(r.out, "cannot present a client") || !strings.Contains(r.out, "plain-HTTP listener (http://...)") {
			t.Fatalf("https endpoint for 3.4: exit %d\n%s", r.code, tail(r.out, 30))
		}
		if out, _ := e.ssh(t, 2, "ls /etc/etcd 2>&1"); !strings.Contains(out, "No such file") {
			t.Errorf("the refused run changed host 2: %q", out)
		}
		since := time.Now()
		bootstrap(t, "dv2", "3.4.23", members, "-e", "etcd_bootstrap=discovery", "-e", "etcd_discovery_endpoints="+plainURL, "-e", "etcd_discovery_token=dv2")
		journal(t, 2, since, "found 3 needed peer(s)")
		b, err := exec.Command("curl", "-sS", "--max-time", "5", plainURL+"/v2/keys/_etcd/registry/dv2").CombinedOutput()
		out := string(b)
		if err != nil || strings.Count(out, `"key":"/_etcd/registry/dv2/`) != 3 { // the 3 members (_config is hidden)
			t.Errorf("token dv2 on the discovery cluster: %v %s", err, out)
		}
	})

	t.Run("DNS SRV, etcd 3.4", func(t *testing.T) {
		wipe(t)
		bootstrap(t, "ns4", "3.4.23", withDNS, "-e", "etcd_bootstrap=dns", "-e", "etcd_dns_domain=etcd4.gokube.test", "-e", "etcd_dns_server=ns4-1")
		checkDNSCluster(t, e, pki, "ns4")
	})
}

// checkDNSCluster: the members know each other by their SRV target names,
// which their certificates carry.
func checkDNSCluster(t *testing.T, e *env, pki, prefix string) {
	t.Helper()
	ms := etcdMemberURLs(t, pki, e.lab.Hosts()[1].Addr)
	for i := 2; i <= 4; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		urls := ms[name]
		if len(urls) != 1 || !strings.HasPrefix(urls[0], "https://"+name+".") {
			t.Errorf("member %s peer URLs %v: want its SRV target name", name, urls)
			continue
		}
		host := strings.TrimSuffix(strings.TrimPrefix(urls[0], "https://"), ":2380")
		b, err := os.ReadFile(filepath.Join(pki, "etcd-member-"+name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || !slices.Contains(c.DNSNames, host) {
			t.Errorf("%s certificate SANs %v: want %s (%v)", name, c.DNSNames, host, err)
		}
	}
	if out, _ := e.ssh(t, 2, "cat /etc/resolv.conf"); !strings.Contains(out, "nameserver "+e.lab.Hosts()[0].Addr) {
		t.Errorf("host 2 resolver: %q", out)
	}
	if out, _ := e.ssh(t, 1, "systemctl is-active dnsmasq; grep -c srv-host= /etc/dnsmasq.d/gokube-etcd.conf"); !strings.Contains(out, "active\n6") {
		t.Errorf("dnsmasq on host 1: %q", out)
	}
}
