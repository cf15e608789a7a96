package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// newNodeCluster is the HA example with two workers: masters 1-3 (also
// the etcd members), the load balancer on 4, and [kube-node] 5 and 6,
// booted for a kubelet (`lab up --kubelet 5,6`): make test's six hosts.
func newNodeCluster(t *testing.T, ctx context.Context, e *env) (*haCluster, []int) {
	t.Helper()
	workers := []int{5, 6}
	hosts := e.lab.Hosts()
	for _, i := range workers {
		if !hosts[i-1].Kubelet {
			t.Fatalf("lab %s: host %d is not a kubelet host (`lab up 6 --kubelet 5,6`)", e.lab.Name(), i)
		}
		if err := e.lab.Reset(ctx, hosts[i-1].Name); err != nil {
			t.Fatalf("reset host %d: %v", i, err)
		}
	}
	c := newHACluster(t, ctx, e, []int{1, 2, 3}, []int{1, 2, 3}, 4)
	c.groups["kube-node"] = workers
	c.writeInventory(t)
	return c, workers
}

// nodeReady returns the node's Ready condition as the API has it.
func (c *haCluster) nodeReady(t *testing.T, name string) (string, error) {
	code, body, err := c.get(t, c.lbURL+"/api/v1/nodes/"+name)
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("node %s: HTTP %d %.200s", name, code, body)
	}
	var n struct {
		Status struct {
			Conditions []struct{ Type, Status, Reason, Message string } `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return "", err
	}
	for _, cd := range n.Status.Conditions {
		if cd.Type == "Ready" {
			return cd.Status + " " + cd.Reason + ": " + cd.Message, nil
		}
	}
	return "", fmt.Errorf("node %s: no Ready condition yet", name)
}

func (c *haCluster) send(t *testing.T, method, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.observer(t).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

type podState struct{ name, node, phase, ip string }

// pods lists the pods of a label selector in the default namespace as the
// API sees them through the load balancer.
func (c *haCluster) pods(t *testing.T, selector string) ([]podState, error) {
	code, body, err := c.get(t, c.lbURL+"/api/v1/namespaces/default/pods?labelSelector="+url.QueryEscape(selector))
	if err != nil || code != 200 {
		return nil, fmt.Errorf("list pods: %v HTTP %d %.200s", err, code, body)
	}
	var pl struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Spec     struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status struct {
				Phase string `json:"phase"`
				PodIP string `json:"podIP"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, err
	}
	out := []podState{}
	for _, p := range pl.Items {
		out = append(out, podState{p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP})
	}
	return out, nil
}

// waitPodsRunning waits until the selector has n pods, all Running with an
// address, and returns them by node.
func (c *haCluster) waitPodsRunning(t *testing.T, selector string, n int) map[string]podState {
	t.Helper()
	byNode := map[string]podState{}
	waitFor(t, fmt.Sprintf("%d pods %s Running", n, selector), 5*time.Minute, func() error {
		ps, err := c.pods(t, selector)
		if err != nil {
			return err
		}
		if len(ps) != n {
			return fmt.Errorf("%d pods: %+v", len(ps), ps)
		}
		clear(byNode)
		for _, p := range ps {
			if p.phase != "Running" || p.ip == "" {
				return fmt.Errorf("pod %s on %q: %s", p.name, p.node, p.phase)
			}
			byNode[p.node] = p
		}
		return nil
	})
	return byNode
}

// deployment is a Deployment of the locally built hello image (never
// pulled); spread puts at most one of its pods on a node.
func deployment(name string, replicas int, spread bool) map[string]any {
	spec := map[string]any{
		"containers": []any{map[string]any{
			"name": "hello", "image": "localhost/gokube/hello:1", "imagePullPolicy": "Never",
		}},
	}
	if spread {
		spec["affinity"] = map[string]any{"podAntiAffinity": map[string]any{
			"requiredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
				"labelSelector": map[string]any{"matchLabels": map[string]any{"app": name}},
				"topologyKey":   "kubernetes.io/hostname",
			}},
		}}
	}
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"replicas": replicas,
			"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": name}},
				"spec":     spec,
			},
		},
	}
}

func (c *haCluster) createDeployment(t *testing.T, dep map[string]any) {
	t.Helper()
	code, body, err := c.send(t, "POST", c.lbURL+"/apis/apps/v1/namespaces/default/deployments", dep)
	if err != nil || code != 201 {
		t.Fatalf("create deployment: %v HTTP %d %.300s", err, code, body)
	}
}

// TestNodes is issue 12's workers on the HA example: the kubelets
// register through the load balancer and go Ready, a Deployment of the
// locally built image runs one pod on each worker (nothing pulled), pods
// on different nodes reach each other with their own addresses (host-gw
// routes), kubectl exec and logs go through the kubelets' webhook
// authorization, the node's kubeconfig reaches /readyz through the load
// balancer, a second run changes nothing, and with a master powered off a
// new Deployment's pod is still created, scheduled and started.
func TestNodes(t *testing.T) {
	e := setup(t)
	// Only stops a hang: at load 100 the first run alone took 25 min.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	c, workers := newNodeCluster(t, ctx, e)
	nodeNames := []string{c.name(workers[0]), c.name(workers[1])}

	r := e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"))
	if r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, tail(r.out, 80))
	}
	if !strings.Contains(r.out, "workers: 2/2 nodes Ready") {
		t.Errorf("verify did not report the workers Ready:\n%s", tail(r.out, 40))
	}

	t.Run("the workers' services, images and routes", func(t *testing.T) {
		for k, node := range workers {
			// One ssh per worker (each costs seconds on a loaded machine):
			// the sections come back in this order.
			out := c.sshOut(t, node, strings.Join([]string{
				"systemctl is-active containerd kubelet kube-proxy gokube-pod-network | sort -u",
				"ctr -n k8s.io images ls -q | grep -c '^localhost/gokube/\\(pause\\|hello\\):1$'",
				"grep -o 'server: .*' /etc/kubernetes/kubelet.conf",
				// The CA key never leaves the control machine.
				"grep -rl 'PRIVATE KEY' /etc/kubernetes/pki | sort",
				"sysctl -n net.ipv4.ip_forward",
				"ip route show proto 186",
			}, "; echo --; "))
			got := strings.Split(out, "\n--\n")
			// The other worker's pod range goes to its address, and only
			// that route is gokube's.
			route := fmt.Sprintf("10.233.%d.0/24 via %s", 64+1-k, c.addr(workers[1-k]))
			want := []string{"active", "2", "server: " + c.lbURL, "/etc/kubernetes/pki/kubelet-server-key.pem", "1", route}
			if len(got) != len(want) {
				t.Errorf("worker %d: %d sections, want %d:\n%s", node, len(got), len(want), out)
				continue
			}
			for i := range want {
				g := strings.TrimSpace(got[i])
				if i == len(want)-1 {
					// ip adds "proto 186" and more after the route.
					if !strings.HasPrefix(g, want[i]+" ") || strings.Contains(g, "\n") {
						t.Errorf("worker %d routes: %q, want %q", node, g, want[i])
					}
				} else if g != want[i] {
					t.Errorf("worker %d: %q, want %q (services, images, kubelet.conf, private keys, ip_forward)", node, g, want[i])
				}
			}
		}
		// Anonymous requests to a kubelet are refused (webhook
		// authentication, anonymous off).
		if out := c.sshOut(t, 1, "curl -sk -o /dev/null -w '%{http_code}' https://"+c.addr(workers[0])+":10250/pods"); out != "401" {
			t.Errorf("anonymous kubelet /pods: HTTP %s, want 401", out)
		}
	})

	t.Run("nodes registered and Ready", func(t *testing.T) {
		for _, n := range nodeNames {
			waitFor(t, "node "+n+" Ready", 5*time.Minute, func() error {
				s, err := c.nodeReady(t, n)
				if err != nil {
					return err
				}
				if !strings.HasPrefix(s, "True ") {
					return fmt.Errorf("Ready %s", s)
				}
				return nil
			})
		}
	})

	t.Run("readyz through the load balancer with the node's kubeconfig", func(t *testing.T) {
		for _, node := range workers {
			if out := c.sshOut(t, node, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz"); out != "ok" {
				t.Errorf("kubectl get --raw /readyz on worker %d: %q", node, out)
			}
		}
	})

	var pods map[string]podState
	t.Run("a Deployment of the local image runs a pod on each worker", func(t *testing.T) {
		c.createDeployment(t, deployment("hello", 2, true))
		pods = c.waitPodsRunning(t, "app=hello", 2)
		for k, node := range workers {
			p, ok := pods[nodeNames[k]]
			if !ok {
				t.Fatalf("no hello pod on %s: %+v", nodeNames[k], pods)
			}
			// The container runs on that host, from the imported image.
			if out := c.sshOut(t, node, "ctr -n k8s.io tasks ls | grep -c RUNNING"); out == "0" {
				t.Errorf("worker %d: no running task", node)
			}
			// The other worker reaches the pod over the routes.
			other := workers[1-k]
			if out := c.sshOut(t, other, "curl -s --max-time 5 http://"+p.ip+":8080/"); out != "hello from "+p.name {
				t.Errorf("pod %s at %s from worker %d answered %q", p.name, p.ip, other, out)
			}
		}
	})
	if len(pods) != 2 {
		t.Fatal("no pod on each worker")
	}

	t.Run("pod to pod across nodes keeps its address; kubectl exec and logs", func(t *testing.T) {
		a, b := pods[nodeNames[0]], pods[nodeNames[1]]
		// exec runs /hello get in pod a (through the apiserver and worker
		// 5's kubelet); pod b answers with the address it saw.
		// An exec or logs stream can break on a loaded machine (seen: "error:
		// EOF" at load 100); the answer, once one comes, must be right.
		waitFor(t, "kubectl exec in pod "+a.name, 3*time.Minute, func() error {
			out, err := e.ssh(t, 1, "kubectl exec "+a.name+" -- /hello get http://"+b.ip+":8080/remote")
			if out = strings.TrimSpace(out); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if out != a.ip {
				t.Fatalf("pod %s (%s) -> pod %s (%s): saw %q", a.name, a.ip, b.name, b.ip, out)
			}
			return nil
		})
		// logs through worker 6's kubelet show that request.
		waitFor(t, "kubectl logs of pod "+b.name, 3*time.Minute, func() error {
			out, err := e.ssh(t, 1, "kubectl logs "+b.name)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "GET /remote from "+a.ip+":") {
				t.Fatalf("kubectl logs %s: no request from %s\n%s", b.name, a.ip, out)
			}
			return nil
		})
	})

	// verify's kube_nodes also checks the Deployment's pods this time.
	t.Run("second run changes nothing on the workers", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"), "-e", "kube_verify_pod_selector=default/app=hello")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		if !strings.Contains(r.out, "workers: 2/2 nodes Ready, 2/2 pods default/app=hello Running") {
			t.Errorf("no workers report of verify:\n%s", tail(r.out, 40))
		}
		for _, n := range nodeNames {
			if rc := r.recap[n]; rc.changed != 0 || rc.ok == 0 {
				t.Errorf("worker %s recap %+v\n%s", n, rc, tail(r.out, 80))
			}
		}
	})

	t.Run("a master powered off: a new pod is still scheduled and runs", func(t *testing.T) {
		// The controller-manager's leader: the Deployment needs another
		// master to take the lease, the pod a live scheduler.
		var victim int
		waitFor(t, "the controller-manager's lease holder", 2*time.Minute, func() (err error) {
			victim, err = c.leaseHolder(t, "kube-controller-manager")
			return err
		})
		stopAt := time.Now()
		if err := e.lab.Stop(ctx, e.lab.Hosts()[victim-1].Name); err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(stopAt).Round(time.Second)
		if err := c.ready(t, "https://"+c.addr(victim)+":6443"); err == nil {
			t.Fatalf("master %d still answers after lab stop", victim)
		}
		start := time.Now()
		c.createDeployment(t, deployment("after", 1, false))
		ps := c.waitPodsRunning(t, "app=after", 1)
		t.Logf("master %d powered off (lab stop took %s): the new Deployment's pod Running after %s", victim, stopped, time.Since(start).Round(time.Second))
		// A live master's controller-manager made the pod: the lease moved.
		if h, err := c.leaseHolder(t, "kube-controller-manager"); err != nil || h == victim {
			t.Errorf("controller-manager lease: holder host %d (powered off: %d): %v", h, victim, err)
		}
		for node, p := range ps {
			k := slices.Index(nodeNames, node)
			if k < 0 {
				t.Fatalf("pod %s on %s, not a worker", p.name, node)
			}
			if out := c.sshOut(t, workers[k], "curl -s --max-time 5 http://"+p.ip+":8080/"); out != "hello from "+p.name {
				t.Errorf("new pod %s answered %q", p.name, out)
			}
		}
		if err := e.lab.Start(ctx, e.lab.Hosts()[victim-1].Name); err != nil {
			t.Fatal(err)
		}
	})
}
