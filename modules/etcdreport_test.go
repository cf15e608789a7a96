package modules

import (
	"context"
	"strings"
	"testing"
)

// The report of three members as their hosts saw them: the leader (with
// its round trips), a learner with an alarm, and a host that was not
// reached; the leader is named from the member list.
func TestEtcdReport(t *testing.T) {
	args := map[string]any{
		"hosts": []any{"etcd-1", "etcd-2", "etcd-3", "etcd-4"},
		"results": map[string]any{
			"etcd-1": map[string]any{"health": true, "leader": "a1", "is_leader": true, "raft_term": 4, "db_size": 20480, "version": "3.7.0",
				"alarms": []any{}, "peer_round_trip_ms": map[string]any{"etcd-2": 0.8, "etcd-3": 1.5}},
			"etcd-2": map[string]any{"health": true, "leader": "a1", "is_leader": false, "is_learner": true, "raft_term": 4, "db_size": 2048, "version": "3.7.0",
				"alarms": []any{"NOSPACE"}},
			"etcd-3": nil,
			"etcd-4": map[string]any{"failed": true, "msg": "connection refused"},
		},
		"addresses": map[string]any{"etcd-1": "10.0.0.1", "etcd-2": "10.0.0.2", "etcd-3": "10.0.0.3", "etcd-4": "10.0.0.4"},
		"members":   []any{map[string]any{"id": "a1", "name": "etcd-1"}, map[string]any{"id": "b2", "name": "etcd-2"}},
	}
	res, err := (EtcdReport{}).Run(context.Background(), nil, args)
	if err != nil {
		t.Fatal(err)
	}
	if res.Data["healthy"] != 2 || res.Data["leader"] != "etcd-1" || res.Failed || res.Changed {
		t.Fatalf("%+v", res)
	}
	want := `etcd: 2/4 members healthy, leader: etcd-1
MEMBER     ADDRESS          HEALTH      LEADER RAFT TERM DB SIZE    VERSION
etcd-1     10.0.0.1         healthy     yes    4         20 kB      3.7.0
etcd-2     10.0.0.2         healthy     learner 4         2 kB       3.7.0 ALARM NOSPACE
etcd-3     10.0.0.3         UNREACHABLE
etcd-4     10.0.0.4         UNHEALTHY   connection refused
members: etcd-1 (a1), etcd-2 (b2)
leader etcd-1, round trip to each follower (mean, from its /metrics): etcd-2 0.8 ms etcd-3 1.5 ms`
	if got := res.Data["report"]; got != want {
		t.Fatalf("report:\n%s\nwant:\n%s", got, want)
	}
	// No healthy member: no leader, and the report says none.
	args["results"] = map[string]any{}
	res, _ = (EtcdReport{}).Run(context.Background(), nil, args)
	if res.Data["leader"] != "" || !strings.HasPrefix(res.Data["report"].(string), "etcd: 0/4 members healthy, leader: none\n") {
		t.Fatalf("%+v", res.Data)
	}
	delete(args, "hosts")
	if _, err := (EtcdReport{}).Run(context.Background(), nil, args); err == nil || !strings.Contains(err.Error(), "hosts") {
		t.Fatalf("without hosts: %v", err)
	}
}

// Without a members argument the list comes from the first host whose
// status registered one (here not the first host: it was not reached).
func TestEtcdReportMembersFromStatus(t *testing.T) {
	list := []any{map[string]any{"id": "a1", "name": "etcd-1"}, map[string]any{"id": "b2", "name": "etcd-2"}}
	args := map[string]any{
		"hosts": []any{"etcd-3", "etcd-2", "etcd-1"},
		"results": map[string]any{
			"etcd-1": map[string]any{"health": true, "leader": "a1", "is_leader": true, "raft_term": 4, "version": "3.7.0", "members": []any{map[string]any{"id": "a1", "name": "other"}}},
			"etcd-2": map[string]any{"health": true, "leader": "a1", "raft_term": 4, "version": "3.7.0", "members": list},
			"etcd-3": nil,
		},
		"addresses": map[string]any{"etcd-1": "10.0.0.1", "etcd-2": "10.0.0.2", "etcd-3": "10.0.0.3"},
	}
	res, err := (EtcdReport{}).Run(context.Background(), nil, args)
	if err != nil {
		t.Fatal(err)
	}
	if res.Data["leader"] != "etcd-1" || !strings.Contains(res.Data["report"].(string), "\nmembers: etcd-1 (a1), etcd-2 (b2)") {
		t.Fatalf("%v\n%s", res.Data["leader"], res.Data["report"])
	}
}
