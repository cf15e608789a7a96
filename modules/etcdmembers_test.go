package modules

import (
	"strings"
	"testing"
	"time"

	"gokube/connection"
)

// TestEtcdMembershipSafety runs against a real 3-member TLS etcd: a removal
// that would leave a degraded cluster is refused and changes nothing; a
// dead member is removed; a learner is added, refused promotion only while
// it lags, then promoted; endpoints falls over to a member that answers.
func TestEtcdMembershipSafety(t *testing.T) {
	c := newEtcdTestCluster(t, 3)
	local := connection.NewLocal("ctl")
	m1, m2, m3 := c.members[0], c.members[1], c.members[2]
	c.stop(m3)
	c.waitHealthy(m1, 30*time.Second) // m3 may have led: an election first
	c.waitHealthy(m2, 30*time.Second)

	// m3 is down: removing m2 would leave m1 alone out of {m1, m3}.
	res := etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_remove", "name": "m2"})
	if !res.Failed || !strings.Contains(res.Msg, "refusing to remove m2: the cluster is already degraded, 1 of its 2 other voting members are unhealthy: m3") ||
		!strings.Contains(res.Msg, "the quorum would be lost") || !strings.Contains(res.Msg, "Nothing was changed") {
		t.Fatalf("degraded removal: %+v", res)
	}
	if got := etcdMemberNames(t, etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "members"})); len(got) != 3 {
		t.Fatalf("refused removal changed the members: %v", got)
	}

	// A rolling restart asks first: with m3 down, restarting m2 would stop
	// the cluster; m3 itself (down already) may restart.
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "restart_check", "name": "m2"})
	if !res.Failed || !strings.Contains(res.Msg, "refusing to restart m2: 1 of the 2 other voting members are unhealthy: m3") ||
		!strings.Contains(res.Msg, "1 of 3 voting members would be up (quorum 2): the cluster would stop") {
		t.Fatalf("restart with a member down: %+v", res)
	}
	if res := etcdRun(t, local, true, m1.clientArgs, map[string]any{"action": "restart_check", "name": "m3"}); res.Failed || res.Changed {
		t.Fatalf("restart of the down member (check mode, read-only): %+v", res)
	}

	// The dead member itself goes: every other voter is healthy. Through
	// endpoints whose first entry is the dead member.
	args := map[string]any{"endpoints": []any{m3.clientURL, m1.clientURL, m2.clientURL},
		"ca_cert": m1.clientArgs["ca_cert"], "cert": m1.clientArgs["cert"], "key": m1.clientArgs["key"]}
	res = etcdRun(t, local, false, args, map[string]any{"action": "member_remove", "name": "m3"})
	if res.Failed || !res.Changed || len(etcdMemberNames(t, res)) != 2 || res.Data["endpoint"] != m1.clientURL {
		t.Fatalf("removing the dead member: %+v", res)
	}

	// A learner: added, started, promoted once in sync.
	m4 := c.newMember("m4")
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_add", "name": "m4", "peer_urls": []any{m4.peerURL}, "is_learner": true})
	if res.Failed || !res.Changed {
		t.Fatalf("learner add: %+v", res)
	}
	// Unstarted, it has no name yet: found by its id.
	var learner map[string]any
	for _, m := range res.Data["members"].([]any) {
		if m.(map[string]any)["id"] == res.Data["id"] {
			learner = m.(map[string]any)
		}
	}
	if learner == nil || learner["is_learner"] != true {
		t.Fatalf("m4 not a learner: %v", res.Data)
	}
	m4ID := res.Data["id"]
	// Not started yet: it cannot be in sync, so etcd refuses.
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_promote", "id": m4ID})
	if !res.Failed || !strings.Contains(res.Msg, "in sync") {
		t.Fatalf("promoting a learner that never started: %+v", res)
	}
	c.members = append(c.members, m4)
	c.start(m4, m1.name+"="+m1.peerURL+","+m2.name+"="+m2.peerURL+",m4="+m4.peerURL, "existing")
	refused := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_promote", "id": m4ID})
		if !res.Failed {
			break
		}
		if !strings.Contains(res.Msg, "in sync") || time.Now().After(deadline) {
			t.Fatalf("promote: %+v\n%s", res, c.logs())
		}
		refused++
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("promotion refused %d times while m4 caught up", refused)
	if !res.Changed || etcdMemberNames(t, res)["m4"]["is_learner"] != false {
		t.Fatalf("promote: %+v", res)
	}
	res = etcdRun(t, local, false, m1.clientArgs, map[string]any{"action": "member_promote", "id": m4ID})
	if res.Failed || res.Changed {
		t.Fatalf("promote again: %+v", res)
	}
	c.waitHealthy(m4, 30*time.Second)

	// No endpoint answers: a failed task naming them, not a hang.
	dead := map[string]any{"endpoints": []any{m3.clientURL}, "ca_cert": m1.clientArgs["ca_cert"], "cert": m1.clientArgs["cert"], "key": m1.clientArgs["key"]}
	res = etcdRun(t, local, false, dead, map[string]any{"action": "members"})
	if !res.Failed || !strings.Contains(res.Msg, m3.clientURL) {
		t.Fatalf("no endpoint answering: %+v", res)
	}
}

func TestEtcdMembershipArgErrors(t *testing.T) {
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"endpoint": "https://a:1", "endpoints": []any{"https://b:1"}}, "endpoint and endpoints are mutually exclusive"},
		{map[string]any{"endpoints": []any{"ftp://b"}}, "want an http:// or https:// URL"},
		{map[string]any{"action": "member_promote"}, "member_promote needs name or id"},
		{map[string]any{"action": "members", "quorum_check": false}, "only for member_remove"},
		{map[string]any{"action": "restart_check"}, "restart_check needs name or id"},
		{map[string]any{"action": "status", "name": "m1"}, "only for member_add, member_remove, member_promote or restart_check"},
	} {
		_, err := etcdParseArgs(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestEtcdParseRoundTrips(t *testing.T) {
	m := `# TYPE etcd_network_peer_round_trip_time_seconds histogram
etcd_network_peer_round_trip_time_seconds_bucket{To="8279cb08d18d89e",le="0.0001"} 0
etcd_network_peer_round_trip_time_seconds_sum{To="8279cb08d18d89e"} 0.012
etcd_network_peer_round_trip_time_seconds_count{To="8279cb08d18d89e"} 8
etcd_network_peer_round_trip_time_seconds_sum{To="fdf7c98ad583f6cf"} 0.5
etcd_network_peer_round_trip_time_seconds_count{To="fdf7c98ad583f6cf"} 0
etcd_network_peer_round_trip_time_seconds_sum{To="a1"} 0
etcd_network_peer_round_trip_time_seconds_count{To="a1"} 1
`
	got := etcdParseRoundTrips(m)
	if len(got) != 1 || got["8279cb08d18d89e"] != 1.5 {
		t.Fatalf("round trips %v, want 8279cb08d18d89e: 1.5 ms only", got)
	}
}

// TestEtcdStatusRoundTripsAndAlarms: a real member reports no alarm and,
// once its prober has run, a round trip to each peer.
func TestEtcdStatusRoundTripsAndAlarms(t *testing.T) {
	c := newEtcdTestCluster(t, 3)
	local := connection.NewLocal("ctl")
	deadline := time.Now().Add(60 * time.Second)
	for {
		res := etcdRun(t, local, false, c.members[0].clientArgs, nil)
		if res.Failed {
			t.Fatalf("status: %+v", res)
		}
		if a := res.Data["alarms"].([]any); len(a) != 0 {
			t.Fatalf("alarms on a fresh cluster: %v", a)
		}
		rtt := res.Data["peer_round_trip_ms"].(map[string]any)
		if len(rtt) == 2 {
			for name, ms := range rtt {
				if ms.(float64) <= 0 || name == c.members[0].name || !strings.HasPrefix(name, "m") {
					t.Fatalf("round trips %v (member %v)", rtt, res.Data["member_id"])
				}
			}
			t.Logf("round trips: %v", rtt)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("round trips after 60 s: %v", rtt)
		}
		time.Sleep(time.Second)
	}
}
