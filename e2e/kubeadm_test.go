package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHAKubeadm is issue 12's kubeadm part: the HA example's cluster
// built with control_plane_mode: kubeadm (three masters that are the etcd
// members, one haproxy host, one worker) passes the same verify and the
// same independent checks as the systemd mode: every apiserver and the
// load balancer ready, the kubernetes endpoints kept by the lease
// reconciler, the controller-manager and scheduler leases on masters, the
// apiservers on the external etcd over TLS. A second run changes nothing;
// a master kubeadm left half-way stops the run with what to do.
func TestHAKubeadm(t *testing.T) {
	e := setupN(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()
	const worker = 5
	if err := e.lab.Reset(ctx, e.lab.Hosts()[worker-1].Name); err != nil {
		t.Fatalf("reset host %d: %v", worker, err)
	}
	c := newHACluster(t, ctx, e, []int{1, 2, 3}, []int{1, 2, 3}, 4)
	c.groups["kube-node"] = []int{worker}
	c.writeInventory(t)
	inv, err := os.ReadFile(c.inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.inv, append(inv, "control_plane_mode=kubeadm\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := c.playbook("cluster.yml")

	t.Run("check mode on fresh hosts predicts and changes nothing", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster, "--check")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		for _, i := range []int{1, 2, 3, worker} {
			if out, err := e.ssh(t, i, "test ! -e /etc/kubernetes && test ! -e /usr/local/bin/kubeadm && echo untouched"); err != nil || !strings.Contains(out, "untouched") {
				t.Errorf("host %d changed by check mode: %v %s", i, err, out)
			}
		}
	})

	t.Run("first run builds a verified control plane with kubeadm", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 80))
		}
		t.Logf("verify report:\n%s", tail(r.out, 30))
		for _, want := range []string{"3/3 apiservers ready", "3/3 members healthy"} {
			if !strings.Contains(r.out, want) {
				t.Errorf("verify did not report %q:\n%s", want, tail(r.out, 40))
			}
		}
		// The components are kubeadm's static pods, not systemd units, on
		// the external etcd over TLS with the recipe's flags.
		for _, i := range c.masters {
			if err := c.ready(t, "https://"+c.addr(i)+":6443"); err != nil {
				t.Errorf("master %d: %v", i, err)
			}
			if out, _ := e.ssh(t, i, "systemctl is-active kube-apiserver"); out == "active" {
				t.Errorf("master %d runs a kube-apiserver unit in kubeadm mode", i)
			}
			m := c.sshOut(t, i, "cat /etc/kubernetes/manifests/kube-apiserver.yaml")
			for _, want := range []string{"--endpoint-reconciler-type=lease", "--etcd-cafile=/etc/kubernetes/pki/etcd-ca.pem", "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.pem", "image: localhost/gokube/kube-apiserver:v1.37.2"} {
				if !strings.Contains(m, want) {
					t.Errorf("master %d: apiserver manifest lacks %q", i, want)
				}
			}
			for _, j := range c.etcd {
				if !strings.Contains(m, "https://"+c.addr(j)+":2379") {
					t.Errorf("master %d: etcd member %d missing from --etcd-servers", i, j)
				}
			}
			// Every master's and the load balancer's address in its serving
			// certificate (the recipe's certSANs).
			sans := c.sshOut(t, i, "openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/apiserver.crt")
			for _, j := range append(slices.Clone(c.masters), c.lb) {
				if !strings.Contains(sans, "IP Address:"+c.addr(j)) {
					t.Errorf("master %d: apiserver certificate lacks host %d's address: %s", i, j, sans)
				}
			}
			if out, err := e.ssh(t, i, "kubectl get --raw /readyz"); err != nil || out != "ok" {
				t.Errorf("master %d: kubectl: %v %q", i, err, out)
			}
		}
		// etcd's CA key never leaves the control machine; the cluster CA's
		// key is on the masters (kubeadm signs the kubelets with it).
		for _, i := range c.masters {
			if out := c.sshOut(t, i, "ls /etc/kubernetes/pki"); strings.Contains(out, "etcd-ca-key") || !strings.Contains(out, "ca.key") {
				t.Errorf("master %d: pki holds %s", i, out)
			}
		}
		if err := c.ready(t, c.lbURL); err != nil {
			t.Errorf("through the load balancer: %v", err)
		}
		// The worker joined through the load balancer and reaches the API
		// through it with its own kubeconfig.
		if out := c.sshOut(t, worker, "grep server: /etc/kubernetes/kubelet.conf"); !strings.Contains(out, c.lbURL) {
			t.Errorf("worker kubelet.conf: %s, want %s", out, c.lbURL)
		}
		if out, err := e.ssh(t, worker, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz"); err != nil || out != "ok" {
			t.Errorf("worker: /readyz through the load balancer with the node's kubeconfig: %v %q", err, out)
		}
		c.endpointsAndLeasesOnMasters(t)
	})

	t.Run("second run changes nothing", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, cluster)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		c.allChanged(t, r, func(n int) bool { return n == 0 }, "second run changed something")
		if n := r.recap[fmt.Sprintf("h-%d", worker)].changed; n != 0 {
			t.Errorf("second run changed %d on the worker", n)
		}
	})

	t.Run("a half-joined master stops the run and says what to do", func(t *testing.T) {
		// A join that stopped after kubelet.conf: the apiserver's manifest
		// is missing.
		c.sshOut(t, 3, "mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/kube-apiserver.yaml")
		r := e.play(t, ctx, "-i", c.inv, cluster)
		c.sshOut(t, 3, "mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/kube-apiserver.yaml")
		if r.code == 0 || !strings.Contains(r.out, "h-3: a kubeadm init or join stopped part-way") || !strings.Contains(r.out, "kubeadm reset -f") {
			t.Errorf("half-joined master: exit %d\n%s", r.code, tail(r.out, 30))
		}
		if n := r.recap["h-3"].changed; n != 0 {
			t.Errorf("the refused run changed %d on the half-joined master", n)
		}
		waitFor(t, "master 3 back", 3*time.Minute, func() error { return c.ready(t, "https://"+c.addr(3)+":6443") })
	})
	t.Logf("TestHAKubeadm took %s", time.Since(start).Round(time.Second))
}
