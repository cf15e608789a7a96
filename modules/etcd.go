package modules

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Etcd is the `etcd` module: health, status and membership of an etcd
// cluster through etcd's TLS client API (its JSON gateway), reached from the
// control machine through the host's connection. Nothing is needed on the
// host or the control machine besides etcd itself: no etcdctl, no client
// library.
//
// Arguments: endpoint (default https://127.0.0.1:2379, as seen from the
// host) or endpoints (a list, as etcdctl's --endpoints: the first that
// answers is used, so a task still works when some members are down),
// ca_cert, cert, key (files on the control machine), timeout (seconds,
// default 10), action:
//
//	status         (default) health from GET /health, and from
//	               POST /v3/maintenance/status: leader, member_id (hex),
//	               is_leader, raft_term, raft_index, db_size, version.
//	               Fails when the member is not healthy.
//	members        members: [{id, name, peer_urls, client_urls, is_learner}]
//	member_add     peer_urls, name, is_learner: adds the member unless one
//	               with those peer URLs exists; registers id and
//	               initial_cluster (for the new member's --initial-cluster,
//	               with --initial-cluster-state existing).
//	member_remove  name or id (hex): removes the member if present, through
//	               another member's endpoint. Unless quorum_check is false,
//	               it first asks every other voting member for its health
//	               (at the member's advertised client URL, through the
//	               host's connection) and refuses, changing nothing, when
//	               one is unhealthy or the target is the last voting member:
//	               a cluster already degraded could lose its quorum.
//	restart_check  name or id (hex): read-only; fails, naming them, when
//	               another voting member is unhealthy, so a rolling restart
//	               never takes a member down while the quorum depends on
//	               it (etcd.yml asks before each member's restart).
//	member_promote name or id (hex): promotes a learner to a voting member
//	               (unchanged when it votes already). etcd refuses until the
//	               learner has caught up with the leader: retry the task
//	               (until/retries) to wait for that.
//	discovery_token token, size, protocol (v3 or v2): on this (existing)
//	               cluster, the discovery token a new cluster of size
//	               members bootstraps from (etcd's --discovery-token, or
//	               for v2 the --discovery URL it registers); unchanged when
//	               the token exists with that size, refused when it exists
//	               with another. Registers registered (members already
//	               in the token) and, for v2, url.
//
// Member ids are hex strings, as etcdctl prints them. Under check mode the
// read-only actions run, member_add, member_remove and member_promote
// predict only.
type Etcd struct{}

// Spec declares the etcd arguments.
func (Etcd) Spec() Spec {
	return Spec{
		Doc: "Health, status and membership of an etcd cluster through etcd's TLS client API, reached from the control machine through the host's connection; nothing needed on the host besides etcd. Read-only actions (status, members, restart_check) run in check mode; member_add, member_remove and member_promote predict.",
		Returns: map[string]string{
			"db_size":            "status: bytes",
			"health":             "status: whether /health says true",
			"id":                 "member_add: the new member's id",
			"initial_cluster":    "member_add: value for the new member's --initial-cluster",
			"is_leader":          "status: whether this member leads",
			"leader":             "status: the leader's id (hex)",
			"member_id":          "status: this member's id",
			"members":            "members, member_add, member_remove, member_promote, and status (unless the member is a learner): list of {id, name, peer_urls, client_urls, is_learner}",
			"member_names":       "with members: the names of the started members",
			"is_learner":         "status: whether this member is a learner (non-voting)",
			"raft_index":         "status",
			"raft_term":          "status",
			"version":            "status: etcd version",
			"alarms":             "status: alarms raised in the cluster (NOSPACE, CORRUPT); any fails the status",
			"peer_round_trip_ms": "status: mean round-trip time in ms to each peer (by name), from the member's /metrics",
			"registered":         "discovery_token: members registered in the token so far",
			"size":               "discovery_token: the token's cluster size",
			"url":                "discovery_token with protocol v2: the --discovery URL",
		},
		Args: map[string]Arg{
			"endpoint":       {Type: String, Kind: URL, Doc: "Client URL as seen from the host.", Default: "https://127.0.0.1:2379"},
			"endpoints":      {Type: List, Kind: URL, Doc: "Client URLs as seen from the host, instead of endpoint: the first that answers is used."},
			"quorum_check":   {Type: Bool, Doc: "member_remove: refuse when another voting member is unhealthy or the target is the last voter.", Default: "yes"},
			"ca_cert":        {Type: String, Aliases: []string{"cacert"}, Doc: "CA certificate file on the control machine."},
			"cert":           {Type: String, Doc: "Client certificate file on the control machine."},
			"key":            {Type: String, Doc: "Client key file on the control machine."},
			"action":         {Type: String, Choices: []string{"status", "members", "member_add", "member_remove", "member_promote", "restart_check", "discovery_token"}, Doc: "status (fails unless healthy), members, member_add, member_remove, member_promote, restart_check (fails unless every other voting member is healthy) or discovery_token.", Default: "status"},
			"token":          {Type: String, Doc: "discovery_token: the token (letters, digits, . _ -)."},
			"size":           {Type: Int, Doc: "discovery_token: the new cluster's member count."},
			"protocol":       {Type: String, Choices: []string{"v3", "v2"}, Doc: "discovery_token: v3 (etcd 3.6+ members: keys through the v3 API) or v2 (3.4/3.5 members: keys through the v2 API, which the discovery cluster must serve).", Default: "v3"},
			"peer_urls":      {Type: List, Kind: URL, Doc: "member_add: the new member's peer URLs; no change when a member has them."},
			"name":           {Type: String, Doc: "member_add: the new member's name; member_remove, member_promote, restart_check: the member."},
			"id":             {Type: String, Kind: HexID, Doc: "member_remove, member_promote, restart_check: the member's id (hex, as etcdctl prints it)."},
			"is_learner":     {Type: Bool, Doc: "member_add: add as a learner.", Default: "no"},
			"timeout":        {Type: Int, Doc: "Seconds for each request.", Default: "10"},
			"validate_certs": {Type: Bool, Doc: "Verify the server's certificate.", Default: "yes"},
		},
		Exclusive:  [][]string{{"endpoint", "endpoints"}, {"name", "id"}},
		RequiredIf: []Requirement{{If: "action", Is: "member_add", Need: []string{"peer_urls", "name"}}, {If: "action", Is: "discovery_token", Need: []string{"token", "size"}}},
	}
}

type etcdParams struct {
	endpoint  string
	endpoints []string // candidates, the first that answers is used
	quorum    bool
	tls       pkiTLS
	action    string
	peerURLs  []string
	name, id  string
	isLearner bool
	timeout   time.Duration
	token     string // discovery_token
	size      int
	protocol  string
}

func etcdParseArgs(args map[string]any) (*etcdParams, error) {
	a, err := parseArgs("etcd", Etcd{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	p := &etcdParams{}
	if a.has("endpoint") && a.has("endpoints") {
		return nil, a.err("endpoints", "endpoint and endpoints exclude each other")
	}
	p.endpoints = []string{a.strOr("endpoint", "https://127.0.0.1:2379")}
	key := "endpoint"
	if a.has("endpoints") {
		key, p.endpoints = "endpoints", a.list("endpoints")
		if len(p.endpoints) == 0 {
			return nil, a.err("endpoints", "an empty list")
		}
	}
	for i, e := range p.endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, a.err(key, "want an https:// URL, got %q", e)
		}
		p.endpoints[i] = strings.TrimRight(e, "/")
	}
	p.endpoint = p.endpoints[0]
	p.quorum = a.boolean("quorum_check", true)
	p.tls.caPath = a.str("ca_cert")
	p.tls.certPath = a.str("cert")
	p.tls.keyPath = a.str("key")
	if (p.tls.certPath == "") != (p.tls.keyPath == "") {
		return nil, a.err("key", "cert and key go together")
	}
	validate := a.boolean("validate_certs", true)
	p.tls.insecure = !validate
	p.action = a.strOr("action", "status")
	p.peerURLs = a.list("peer_urls")
	p.name = a.str("name")
	p.id = a.str("id")
	p.isLearner = a.boolean("is_learner", false)
	defTimeout := 10 * time.Second
	if p.action == "member_add" || p.action == "member_remove" || p.action == "member_promote" {
		// Room for a retry after etcd's own request timeout (about 7s).
		defTimeout = 30 * time.Second
	}
	if p.timeout, err = a.seconds("timeout", defTimeout); err != nil {
		return nil, err
	}
	if a.has("quorum_check") && p.action != "member_remove" {
		return nil, a.err("quorum_check", "only for member_remove")
	}
	switch p.action {
	case "member_add":
		if len(p.peerURLs) == 0 {
			return nil, a.err("peer_urls", "required for member_add")
		}
		for _, s := range p.peerURLs {
			if u, err := url.Parse(s); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, a.err("peer_urls", "%q is not a peer URL", s)
			}
		}
		if p.name == "" {
			return nil, a.err("name", "required for member_add (it names the member in initial_cluster)")
		}
	case "member_remove", "member_promote", "restart_check":
		if (p.name == "") == (p.id == "") {
			return nil, a.err("name", "%s needs name or id (one of them)", p.action)
		}
		if p.id != "" {
			if _, err := strconv.ParseUint(p.id, 16, 64); err != nil {
				return nil, a.err("id", "%q is not a hex member id", p.id)
			}
		}
	case "discovery_token":
		p.token, p.size, p.protocol = a.str("token"), a.integer("size", 0), a.strOr("protocol", "v3")
		if !etcdTokenRe.MatchString(p.token) {
			return nil, a.err("token", "%q: want letters, digits, '.', '_' or '-' (it becomes a key path)", p.token)
		}
		if p.size < 1 {
			return nil, a.err("size", "want a member count of 1 or more, got %d", p.size)
		}
	}
	if p.action != "discovery_token" {
		for _, k := range []string{"token", "size", "protocol"} {
			if a.has(k) {
				return nil, a.err(k, "only for discovery_token")
			}
		}
	}
	if p.action != "restart_check" && p.action != "member_add" && p.action != "member_remove" && p.action != "member_promote" {
		for _, k := range []string{"name", "id"} {
			if a.has(k) {
				return nil, a.err(k, "only for member_add, member_remove, member_promote or restart_check")
			}
		}
	}
	if p.action != "member_add" && p.action != "member_remove" && p.action != "member_promote" {
		for _, k := range []string{"peer_urls", "is_learner"} {
			if a.has(k) {
				return nil, a.err(k, "only for member_add, member_remove or member_promote")
			}
		}
	}
	return p, nil
}

// Run performs the action.
func (Etcd) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := etcdParseArgs(args)
	if err != nil {
		return nil, err
	}
	client, done, err := pkiHTTPClient(env, "etcd", p.tls, p.timeout)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ec := &etcdClient{c: client, endpoint: p.endpoint}
	if len(p.endpoints) > 1 {
		if ec.endpoint, err = etcdFirstAnswering(ctx, client, p.endpoints); err != nil {
			msg := fmt.Sprintf("etcd %s: %s", p.action, pkiErrText(err))
			return &Result{Failed: true, Msg: msg, Data: map[string]any{"endpoint": "", "msg": msg, "health": false}}, nil
		}
		p.endpoint = ec.endpoint
	}
	check := env.Check
	var res *Result
	switch p.action {
	case "status":
		res, err = etcdStatusAction(ctx, ec)
	case "members":
		var ms etcdMembers
		if err = ec.post(ctx, "/v3/cluster/member/list", struct{}{}, &ms); err == nil {
			res = &Result{Msg: fmt.Sprintf("%d members", len(ms.Members)), Data: map[string]any{"members": etcdMemberList(ms.Members)}}
		}
	case "member_add":
		sent := false
		res, err = etcdRetry(ctx, func(ctx context.Context) (*Result, error) { return etcdMemberAdd(ctx, ec, p, check, &sent) })
	case "member_remove":
		if p.quorum {
			err = etcdQuorumGuard(ctx, ec, p)
		}
		if err == nil {
			sent := false
			res, err = etcdRetry(ctx, func(ctx context.Context) (*Result, error) { return etcdMemberRemove(ctx, ec, p, check, &sent) })
		}
	case "member_promote":
		res, err = etcdMemberPromote(ctx, ec, p, check)
	case "restart_check":
		res, err = etcdRestartCheck(ctx, ec, p)
	case "discovery_token":
		res, err = etcdDiscoveryToken(ctx, ec, p, check)
	}
	if err != nil {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return nil, hostErr
		}
		msg := fmt.Sprintf("etcd %s at %s: %s", p.action, p.endpoint, pkiErrText(err))
		data := map[string]any{"endpoint": p.endpoint, "msg": msg}
		if p.action == "status" {
			data["health"] = false
		}
		return &Result{Failed: true, Msg: msg, Data: data}, nil
	}
	res.Data["endpoint"] = p.endpoint
	res.Data["msg"] = res.Msg
	if ms, ok := res.Data["members"].([]any); ok {
		// For conditions such as `has .etcd_member_name .x.member_names`.
		names := make([]any, 0, len(ms))
		for _, m := range ms {
			if n, _ := m.(map[string]any)["name"].(string); n != "" {
				names = append(names, n)
			}
		}
		res.Data["member_names"] = names
	}
	return res, nil
}

func etcdStatusAction(ctx context.Context, ec *etcdClient) (*Result, error) {
	healthy, reason, err := ec.health(ctx)
	if err != nil {
		return nil, err
	}
	var st etcdStatus
	if err := ec.post(ctx, "/v3/maintenance/status", struct{}{}, &st); err != nil {
		return nil, err
	}
	data := map[string]any{
		"health":             healthy,
		"leader":             st.Leader.hex(),
		"member_id":          st.Header.MemberID.hex(),
		"cluster_id":         st.Header.ClusterID.hex(),
		"is_leader":          st.Leader != 0 && st.Leader == st.Header.MemberID,
		"raft_term":          uint64(st.RaftTerm),
		"raft_index":         uint64(st.RaftIndex),
		"raft_applied_index": uint64(st.RaftAppliedIndex),
		"revision":           uint64(st.Header.Revision),
		"db_size":            uint64(st.DBSize),
		"db_size_in_use":     uint64(st.DBSizeInUse),
		"version":            st.Version,
		"is_learner":         st.IsLearner,
		"errors":             append([]string{}, st.Errors...),
	}
	// What the recipe reads from the leader's /v2/stats/leader, on v3:
	// alarms, and the round-trip time to each peer from /metrics.
	// A learner answers neither alarms nor member list ("rpc not
	// supported for learner"); the voting members report the alarms.
	alarms := []any{}
	if !st.IsLearner {
		if alarms, err = ec.alarms(ctx); err != nil {
			return nil, err
		}
	}
	data["alarms"] = alarms
	rtt, err := ec.peerRoundTrips(ctx)
	if err != nil {
		return nil, err
	}
	// Keyed by member name (the id when a member has not started yet).
	// The list is registered too: the verify report names the members
	// from it, so it needs no members call (another forward) of its own.
	var ms etcdMembers
	if err := ec.post(ctx, "/v3/cluster/member/list", struct{}{}, &ms); err == nil {
		data["members"] = etcdMemberList(ms.Members)
		for _, m := range ms.Members {
			if v, ok := rtt[m.ID.hex()]; ok && m.Name != "" {
				delete(rtt, m.ID.hex())
				rtt[m.Name] = v
			}
		}
	}
	data["peer_round_trip_ms"] = rtt
	if st.Leader == 0 {
		data["leader"] = ""
	}
	res := &Result{Data: data}
	if healthy && len(alarms) > 0 {
		healthy = false
		reason = "alarm " + strings.Join(etcdStrings(alarms), ", ")
	}
	if healthy {
		res.Msg = fmt.Sprintf("healthy, member %s, leader %s, raft term %d", data["member_id"], data["leader"], st.RaftTerm)
	} else {
		res.Failed = true
		res.Msg = "unhealthy"
		if reason != "" {
			res.Msg += ": " + reason
		}
		if len(st.Errors) > 0 {
			res.Msg += ": " + strings.Join(st.Errors, "; ")
		}
		if st.Leader == 0 {
			res.Msg += " (no leader)"
		}
	}
	return res, nil
}

func etcdMemberList(ms []etcdMember) []any {
	out := make([]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, map[string]any{
			"id":          m.ID.hex(),
			"name":        m.Name,
			"peer_urls":   append([]string{}, m.PeerURLs...),
			"client_urls": append([]string{}, m.ClientURLs...),
			"is_learner":  m.IsLearner,
		})
	}
	return out
}

// etcdInitialCluster is the --initial-cluster a member joining the cluster
// needs, as `etcdctl member add` prints it: every member's peer URLs, the
// new (not yet started, so unnamed) member under the given name.
func etcdInitialCluster(ms []etcdMember, id etcdUint, name string, peerURLs []string) string {
	var parts []string
	seen := false
	for _, m := range ms {
		n := m.Name
		if m.ID == id && id != 0 {
			n, seen = name, true
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	if !seen {
		for _, u := range peerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

func etcdSameURLs(a, b []string) bool {
	return x509SameSet(a, b)
}

// etcdMemberAdd adds the member unless present; sent records that an add
// was posted by an earlier attempt of this task, so finding the member then
// still reports a change.
func etcdMemberAdd(ctx context.Context, ec *etcdClient, p *etcdParams, check bool, sent *bool) (*Result, error) {
	var ms etcdMembers
	if err := ec.post(ctx, "/v3/cluster/member/list", struct{}{}, &ms); err != nil {
		return nil, err
	}
	for _, m := range ms.Members {
		if etcdSameURLs(m.PeerURLs, p.peerURLs) {
			if m.Name != "" && m.Name != p.name {
				return nil, fmt.Errorf("peer URLs %v belong to member %s (%s), not %s", p.peerURLs, m.Name, m.ID.hex(), p.name)
			}
			return etcdAddResult(*sent, false, m.ID, ms.Members, p), nil
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(p.peerURLs, u) {
				return nil, fmt.Errorf("peer URL %s already belongs to member %s (%s) with peer URLs %v", u, m.Name, m.ID.hex(), m.PeerURLs)
			}
		}
	}
	if check {
		return etcdAddResult(true, check, 0, ms.Members, p), nil
	}
	var added etcdMembers
	req := map[string]any{"peerURLs": p.peerURLs, "isLearner": p.isLearner}
	if _, err := ec.requireLeader(ctx, ms.Members); err != nil {
		return nil, err
	}
	*sent = true
	if err := ec.post(ctx, "/v3/cluster/member/add", req, &added); err != nil {
		return nil, err
	}
	if added.Member == nil || added.Member.ID == 0 {
		return nil, fmt.Errorf("member add: answer without the new member")
	}
	return etcdAddResult(true, false, added.Member.ID, added.Members, p), nil
}

func etcdAddResult(changed, check bool, id etcdUint, ms []etcdMember, p *etcdParams) *Result {
	data := map[string]any{
		"id":                    id.hex(),
		"name":                  p.name,
		"peer_urls":             append([]string{}, p.peerURLs...),
		"initial_cluster":       etcdInitialCluster(ms, id, p.name, p.peerURLs),
		"initial_cluster_state": "existing",
		"members":               etcdMemberList(ms),
	}
	msg := fmt.Sprintf("member %s (%s) present", p.name, id.hex())
	switch {
	case changed && check:
		data["id"] = ""
		msg = fmt.Sprintf("member %s would be added with peer URLs %v", p.name, p.peerURLs)
	case changed:
		msg = fmt.Sprintf("member %s added as %s", p.name, id.hex())
	}
	return &Result{Changed: changed, Msg: msg, Data: data}
}

func etcdMemberRemove(ctx context.Context, ec *etcdClient, p *etcdParams, check bool, sent *bool) (*Result, error) {
	ms, target, who, err := etcdLookupMember(ctx, ec, p)
	if err != nil {
		return nil, err
	}
	if target == nil {
		if *sent {
			return &Result{Changed: true, Msg: "member " + who + " removed", Data: map[string]any{"id": "", "members": etcdMemberList(ms.Members)}}, nil
		}
		return &Result{Msg: "member " + who + " absent", Data: map[string]any{"id": "", "members": etcdMemberList(ms.Members)}}, nil
	}
	if check {
		return &Result{Changed: true, Msg: fmt.Sprintf("member %s (%s) would be removed", who, target.ID.hex()),
			Data: map[string]any{"id": target.ID.hex(), "members": etcdMemberList(ms.Members)}}, nil
	}
	var after etcdMembers
	// The gateway takes the uint64 id as a decimal string.
	st, err := ec.requireLeader(ctx, ms.Members)
	if err != nil {
		return nil, err
	}
	if st.Header.MemberID == target.ID {
		// The member would stop while answering, and this task could not
		// confirm the removal.
		return nil, fmt.Errorf("member %s (%s) serves this endpoint; remove it through another member's endpoint", who, target.ID.hex())
	}
	*sent = true
	if err := ec.post(ctx, "/v3/cluster/member/remove", map[string]any{"ID": strconv.FormatUint(uint64(target.ID), 10)}, &after); err != nil {
		return nil, err
	}
	return &Result{Changed: true, Msg: fmt.Sprintf("member %s (%s) removed", who, target.ID.hex()),
		Data: map[string]any{"id": target.ID.hex(), "members": etcdMemberList(after.Members)}}, nil
}
