package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// nodeCluster is the HA example with a worker: one master that is also the
// etcd member, one load balancer, and one [kube-node] host booted for a
// kubelet (`lab up --kubelet`); the smallest layout that has every part.
func newNodeCluster(t *testing.T, ctx context.Context, e *env) (*haCluster, int) {
	t.Helper()
	node, others := 0, []int{}
	for _, h := range e.lab.Hosts() {
		if h.Kubelet && node == 0 {
			node = h.Index
		} else if !h.Kubelet {
			others = append(others, h.Index)
		}
	}
	if node == 0 || len(others) < 2 {
		t.Fatalf("lab %s: want a kubelet host (`lab up --kubelet N`) and two others", e.lab.Name())
	}
	if err := e.lab.Reset(ctx, e.lab.Hosts()[node-1].Name); err != nil {
		t.Fatalf("reset host %d: %v", node, err)
	}
	c := newHACluster(t, ctx, e, others[:1], others[:1], others[1])
	c.groups["kube-node"] = []int{node}
	c.writeInventory(t)
	return c, node
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

// TestNodes is issue 12's workers: the kubelet registers through the load
// balancer and goes Ready, a Deployment of the locally built image runs on
// the worker (nothing pulled), the node's kubeconfig reaches /readyz
// through the load balancer, and a second run changes nothing.
func TestNodes(t *testing.T) {
	e := setupN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, node := newNodeCluster(t, ctx, e)
	nodeName := c.name(node)

	r := e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"))
	if r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, tail(r.out, 80))
	}
	if !strings.Contains(r.out, "workers: 1/1 nodes Ready") {
		t.Errorf("verify did not report the worker Ready:\n%s", tail(r.out, 40))
	}

	t.Run("the worker's services and images", func(t *testing.T) {
		for _, u := range []string{"containerd", "kubelet", "kube-proxy"} {
			if out := c.sshOut(t, node, "systemctl is-active "+u+" || true"); out != "active" {
				t.Errorf("%s on the worker: %s", u, out)
			}
		}
		imgs := c.sshOut(t, node, "ctr -n k8s.io images ls -q")
		for _, ref := range []string{"localhost/gokube/pause:1", "localhost/gokube/hello:1"} {
			if !strings.Contains(imgs, ref) {
				t.Errorf("containerd lacks %s:\n%s", ref, imgs)
			}
		}
		if server := c.sshOut(t, node, "grep -o 'server: .*' /etc/kubernetes/kubelet.conf"); server != "server: "+c.lbURL {
			t.Errorf("kubelet.conf %s, want the load balancer %s", server, c.lbURL)
		}
		// The CA key never leaves the control machine.
		if out := c.sshOut(t, node, "grep -rl 'PRIVATE KEY' /etc/kubernetes/pki | sort"); out != "/etc/kubernetes/pki/kubelet-server-key.pem" {
			t.Errorf("private keys on the worker: %q", out)
		}
	})

	t.Run("node registered and Ready", func(t *testing.T) {
		waitFor(t, "node "+nodeName+" Ready", 5*time.Minute, func() error {
			s, err := c.nodeReady(t, nodeName)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(s, "True ") {
				return fmt.Errorf("Ready %s", s)
			}
			return nil
		})
	})

	t.Run("readyz through the load balancer with the node's kubeconfig", func(t *testing.T) {
		out := c.sshOut(t, node, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz")
		if out != "ok" {
			t.Errorf("kubectl get --raw /readyz on the worker: %q", out)
		}
	})

	t.Run("a Deployment of the local image runs on the worker", func(t *testing.T) {
		dep := map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "hello", "namespace": "default"},
			"spec": map[string]any{
				"replicas": 1,
				"selector": map[string]any{"matchLabels": map[string]any{"app": "hello"}},
				"template": map[string]any{
					"metadata": map[string]any{"labels": map[string]any{"app": "hello"}},
					"spec": map[string]any{
						"nodeSelector": map[string]any{"kubernetes.io/hostname": nodeName},
						"containers": []any{map[string]any{
							"name": "hello", "image": "localhost/gokube/hello:1", "imagePullPolicy": "Never",
						}},
					},
				},
			},
		}
		code, body, err := c.send(t, "POST", c.lbURL+"/apis/apps/v1/namespaces/default/deployments", dep)
		if err != nil || code != 201 {
			t.Fatalf("create deployment: %v HTTP %d %.300s", err, code, body)
		}
		var podName, podIP string
		waitFor(t, "the hello pod Running", 5*time.Minute, func() error {
			code, body, err := c.get(t, c.lbURL+"/api/v1/namespaces/default/pods?labelSelector=app%3Dhello")
			if err != nil || code != 200 {
				return fmt.Errorf("list pods: %v HTTP %d", err, code)
			}
			var pl struct {
				Items []struct {
					Metadata struct{ Name string } `json:"metadata"`
					Spec     struct {
						NodeName string `json:"nodeName"`
					} `json:"spec"`
					Status struct {
						Phase             string `json:"phase"`
						PodIP             string `json:"podIP"`
						ContainerStatuses []struct {
							State json.RawMessage `json:"state"`
						} `json:"containerStatuses"`
					} `json:"status"`
				} `json:"items"`
			}
			if err := json.Unmarshal(body, &pl); err != nil {
				return err
			}
			if len(pl.Items) != 1 {
				return fmt.Errorf("%d pods", len(pl.Items))
			}
			p := pl.Items[0]
			if p.Status.Phase != "Running" || p.Status.PodIP == "" {
				return fmt.Errorf("pod %s on %q: %s %s", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, body)
			}
			if p.Spec.NodeName != nodeName {
				t.Fatalf("pod on %s, want %s", p.Spec.NodeName, nodeName)
			}
			podName, podIP = p.Metadata.Name, p.Status.PodIP
			return nil
		})
		// The pod answers on its address from the worker: it runs the
		// image built here, over the CNI bridge.
		if out := c.sshOut(t, node, "curl -s --max-time 5 http://"+podIP+":8080/"); out != "hello from "+podName {
			t.Errorf("pod %s at %s answered %q", podName, podIP, out)
		}
	})

	// verify's kube_nodes also checks the Deployment's pod this time.
	t.Run("second run changes nothing on the worker", func(t *testing.T) {
		r := e.play(t, ctx, "-i", c.inv, c.playbook("cluster.yml"), "-e", "kube_verify_pod_selector=default/app=hello")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, tail(r.out, 60))
		}
		if !strings.Contains(r.out, "workers: 1/1 nodes Ready") {
			t.Errorf("no workers report of verify:\n%s", tail(r.out, 40))
		}
		if rc := r.recap[nodeName]; rc.changed != 0 || rc.ok == 0 {
			t.Errorf("worker recap %+v\n%s", rc, tail(r.out, 80))
		}
	})
}
