package modules

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HAProxyServer is the `haproxy_server` module: how haproxy sees its
// backend servers, read from its statistics page (CSV) on the host's
// loopback through the host's connection. A rolling restart waits on it
// until the load balancer has put a restarted apiserver back in rotation,
// not merely until the apiserver says it is ready.
//
// Arguments: backend (required), server (one server's name; optional),
// stats_url (default http://127.0.0.1:8404/stats), timeout (seconds,
// default 5).
//
// Registers: servers (map: server name -> status such as UP, DOWN,
// "UP 1/2", MAINT), status (the named server's status, "" when absent),
// up (bool: the named server is UP; without server: every server is UP).
// Fails only when the page cannot be read. Read-only: runs in check mode.
type HAProxyServer struct{}

// Spec declares the haproxy_server arguments.
func (HAProxyServer) Spec() Spec {
	return Spec{
		Doc: "How haproxy sees the servers of a backend, from its statistics page (CSV) on the host's loopback. Fails only when the page cannot be read. Read-only.",
		Returns: map[string]string{
			"servers": "map: server name -> status (UP, DOWN, DRAIN, MAINT, ...)",
			"status":  "the named server's status (\"\" when absent)",
			"up":      "bool: the named server is UP (without server: every server is)",
			"match":   "bool: the backend's servers are exactly expect_servers",
		},
		Args: map[string]Arg{
			"backend":        {Type: String, Required: true, Doc: "Backend name in haproxy.cfg."},
			"server":         {Type: String, Doc: "One server's name."},
			"stats_url":      {Type: String, Kind: URL, Doc: "The statistics page as seen from the host.", Default: "http://127.0.0.1:8404/stats"},
			"timeout":        {Type: Int, Doc: "Seconds for the request.", Default: "5"},
			"expect_servers": {Type: List, Doc: "The servers the backend should have: sets match (haproxy reports a failed reload only in its log, so a role checks what it runs)."},
		}}
}

// Run reads the statistics page.
func (HAProxyServer) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("haproxy_server", HAProxyServer{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	statsURL := a.strOr("stats_url", "http://127.0.0.1:8404/stats")
	if u, err := url.Parse(statsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, a.err("stats_url", "want an http:// URL, got %q", statsURL)
	}
	timeout, err := a.seconds("timeout", 5*time.Second)
	if err != nil {
		return nil, err
	}
	backend, server := a.str("backend"), a.str("server")
	client, done, err := pkiHTTPClient(env, "haproxy_server", pkiTLS{}, timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := pkiDo(cctx, client, http.MethodGet, strings.TrimRight(statsURL, "/")+";csv", nil, nil)
	if err != nil {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return nil, hostErr
		}
		return &Result{Failed: true, Msg: "haproxy_server: " + pkiErrText(err), Data: haproxyNone()}, nil
	}
	if r.status != http.StatusOK {
		return &Result{Failed: true, Msg: fmt.Sprintf("haproxy_server: %s: HTTP %d", statsURL, r.status), Data: haproxyNone()}, nil
	}
	servers, err := haproxyServers(string(r.body), backend)
	if err != nil {
		return &Result{Failed: true, Msg: "haproxy_server: " + err.Error(), Data: haproxyNone()}, nil
	}
	data := map[string]any{"servers": servers, "status": "", "up": false}
	if a.has("expect_servers") {
		want := a.list("expect_servers")
		match := len(want) == len(servers)
		for _, w := range want {
			_, ok := servers[w]
			match = match && ok
		}
		data["match"] = match
	}
	if server != "" {
		st, _ := servers[server].(string)
		data["status"] = st
		data["up"] = st == "UP"
	} else {
		up := len(servers) > 0
		for _, st := range servers {
			up = up && st == "UP"
		}
		data["up"] = up
	}
	return &Result{Data: data, Msg: fmt.Sprintf("backend %s: %v", backend, servers)}, nil
}

// haproxyNone is what a failed read registers: every key an `until:` may
// test is there (haproxy is briefly unreachable while it reloads).
func haproxyNone() map[string]any {
	return map[string]any{"servers": map[string]any{}, "status": "", "up": false, "match": false}
}

// haproxyServers picks the server rows of one backend from haproxy's CSV
// ("# pxname,svname,...,status,..."): name -> status.
func haproxyServers(text, backend string) (map[string]any, error) {
	text = strings.TrimPrefix(text, "# ")
	rd := csv.NewReader(strings.NewReader(text))
	rd.FieldsPerRecord = -1
	rows, err := rd.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("statistics CSV: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("statistics CSV: empty")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	if _, ok := col["status"]; !ok {
		return nil, fmt.Errorf("statistics CSV: no status column")
	}
	out := map[string]any{}
	found := false
	for _, row := range rows[1:] {
		if len(row) <= st || row[px] != backend {
			continue
		}
		found = true
		if row[sv] == "BACKEND" || row[sv] == "FRONTEND" {
			continue
		}
		out[row[sv]] = row[st]
	}
	if !found {
		return nil, fmt.Errorf("no backend %q in haproxy's statistics", backend)
	}
	return out, nil
}
