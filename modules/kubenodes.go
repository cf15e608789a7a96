package modules

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// KubeNodes is the `kube_nodes` module: the workers as the API sees them,
// read through one base URL (the load balancer) from the vantage point of
// one host: every expected node registered and Ready, and, when asked, the
// pods of a label selector Running. The aggregation over nodes is here so
// the verify role reads like a sentence.
type KubeNodes struct{}

// Spec declares the kube_nodes arguments.
func (KubeNodes) Spec() Spec {
	return Spec{
		Doc: "The workers as the API sees them: every expected node registered with Ready True, and optionally the pods of a label selector Running. Does not fail by itself: assert on healthy. Read-only.",
		Returns: map[string]string{
			"healthy":  "bool: every check passed",
			"problems": "list of what failed, one sentence each",
			"nodes":    "list of {name, ready, detail} for every node the API has",
			"pods":     "list of {name, node, phase, ready} of the selected pods",
		},
		Args: map[string]Arg{
			"api":          {Type: String, Required: true, Doc: "Base URL of the API (the load balancer), as seen from the host."},
			"nodes":        {Type: List, Required: true, Doc: "Node names that must be registered and Ready (e.g. hostsOf \"kube-node\")."},
			"pod_selector": {Type: String, Doc: "namespace/label-selector of pods that must all be Running, e.g. default/app=hello."},
			"ca_cert":      {Type: String, Required: true, Doc: "Cluster CA file on the control machine."},
			"client_cert":  {Type: String, Required: true, Doc: "Client certificate file on the control machine (an admin identity)."},
			"client_key":   {Type: String, Required: true, Doc: "Client key file on the control machine."},
			"timeout":      {Type: Int, Doc: "Seconds for each call.", Default: "5"},
		}}
}

type knNode struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

// knReady is a node's Ready condition: ready, and why not.
func knReady(n knNode) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return true, "Ready"
			}
			return false, strings.TrimSpace(c.Reason + " " + c.Message)
		}
	}
	return false, "no Ready condition yet"
}

type knPod struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// knPods reports the selected pods: a pod counts as running when its phase
// is Running and every container is ready (a container that keeps
// restarting leaves the phase Running).
func knPods(ns string, items []knPod) (pods []any, running int, problems []string) {
	for _, p := range items {
		ready := p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) > 0
		var notReady []string
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				ready = false
				notReady = append(notReady, c.Name)
			}
		}
		pods = append(pods, map[string]any{"name": p.Metadata.Name, "node": p.Spec.NodeName, "phase": p.Status.Phase, "ready": ready})
		switch {
		case ready:
			running++
		case p.Status.Phase != "Running":
			problems = append(problems, fmt.Sprintf("pod %s/%s on %q: %s", ns, p.Metadata.Name, p.Spec.NodeName, p.Status.Phase))
		default:
			problems = append(problems, fmt.Sprintf("pod %s/%s on %q: Running, containers not ready: %s", ns, p.Metadata.Name, p.Spec.NodeName, strings.Join(notReady, ",")))
		}
	}
	return pods, running, problems
}

// Run reads the nodes (and pods) and builds the report.
func (KubeNodes) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("kube_nodes", KubeNodes{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	base, err := kvBaseURL(a, "api", a.str("api"))
	if err != nil {
		return nil, err
	}
	want := a.list("nodes")
	// An empty selector means no pod check (roles pass their default).
	ns, selector, hasPods := "", "", a.str("pod_selector") != ""
	if hasPods {
		var ok bool
		ns, selector, ok = strings.Cut(a.str("pod_selector"), "/")
		if !ok || ns == "" || selector == "" {
			return nil, a.err("pod_selector", "want namespace/label-selector, got %q", a.str("pod_selector"))
		}
	}
	timeout, err := a.seconds("timeout", 5*time.Second)
	if err != nil {
		return nil, err
	}
	client, done, err := pkiHTTPClient(env, "kube_nodes", pkiTLS{caPath: a.str("ca_cert"), certPath: a.str("client_cert"), keyPath: a.str("client_key")}, timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	get := func(path string, into any) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		r, err := pkiDo(cctx, client, http.MethodGet, base+path, nil, nil)
		if err != nil {
			if hostErr := pkiHostErr(err); hostErr != nil {
				return "", hostErr
			}
			return kvShortErr(err), nil
		}
		if r.status != http.StatusOK {
			return fmt.Sprintf("HTTP %d %s", r.status, khFirstLine(r.body)), nil
		}
		if err := json.Unmarshal(r.body, into); err != nil {
			return "bad JSON: " + err.Error(), nil
		}
		return "", nil
	}

	var problems []string
	var list struct {
		Items []knNode `json:"items"`
	}
	var nodes []any
	if why, err := get("/api/v1/nodes", &list); err != nil {
		return nil, err
	} else if why != "" {
		problems = append(problems, "nodes: "+why)
	} else {
		seen := map[string]bool{}
		for _, n := range list.Items {
			ok, detail := knReady(n)
			seen[n.Metadata.Name] = true
			nodes = append(nodes, map[string]any{"name": n.Metadata.Name, "ready": ok, "detail": detail})
			if !ok && slices.Contains(want, n.Metadata.Name) {
				problems = append(problems, fmt.Sprintf("node %s: not Ready (%s)", n.Metadata.Name, detail))
			}
		}
		for _, w := range want {
			if !seen[w] {
				problems = append(problems, fmt.Sprintf("node %s: not registered", w))
			}
		}
	}
	var pods []any
	running := 0
	if hasPods {
		var pl struct {
			Items []knPod `json:"items"`
		}
		q := "/api/v1/namespaces/" + ns + "/pods?labelSelector=" + url.QueryEscape(selector)
		if why, err := get(q, &pl); err != nil {
			return nil, err
		} else if why != "" {
			problems = append(problems, "pods "+a.str("pod_selector")+": "+why)
		} else {
			var pp []string
			pods, running, pp = knPods(ns, pl.Items)
			if len(pl.Items) == 0 {
				pp = append(pp, "pods "+a.str("pod_selector")+": none")
			}
			problems = append(problems, pp...)
		}
	}
	ready := 0
	for _, n := range nodes {
		if n.(map[string]any)["ready"].(bool) {
			ready++
		}
	}
	msg := fmt.Sprintf("%d/%d nodes Ready", ready, len(nodes))
	if hasPods {
		msg += fmt.Sprintf(", %d/%d pods %s Running", running, len(pods), a.str("pod_selector"))
	}
	if len(problems) > 0 {
		msg += "; " + strings.Join(problems, "; ")
	}
	return &Result{Msg: msg, Data: map[string]any{
		"healthy": len(problems) == 0, "problems": append([]string{}, problems...),
		"nodes": nodes, "pods": pods,
	}}, nil
}
