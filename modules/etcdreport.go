package modules

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// EtcdReport is the `etcd_report` module: the etcd half of the verify
// report, added up in Go from what each member's host saw (its registered
// `etcd` status) instead of in long template loops. It never contacts a
// host: the per-host status tasks did, so a member whose host is down is
// the one without a result (UNREACHABLE).
type EtcdReport struct{}

// Spec declares the etcd_report arguments.
func (EtcdReport) Spec() Spec {
	return Spec{
		Doc: "The etcd cluster report: members healthy, the leader by name, one line per member as its own host saw it (health, leader or learner, raft term, db size, version, alarms), the member list and the leader's round trip to each follower. Never contacts the host; does not fail by itself: assert on healthy and leader.",
		Returns: map[string]string{
			"healthy": "int: members whose status said healthy",
			"leader":  "the leader's member name (its id when no member has that id; empty when no healthy member knows one)",
			"report":  "the report's text, one line per member",
		},
		Args: map[string]Arg{
			"hosts":     {Type: List, Required: true, Doc: "The etcd group's hosts, in report order (hostsOf $.etcd_group)."},
			"results":   {Type: Map, Required: true, Doc: "Each host's registered `etcd` status result; a host without one (null) was unreachable (hostvarsOf $.etcd_group \"etcd_verify\" nil)."},
			"addresses": {Type: Map, Required: true, Doc: "Each host's etcd address (hostvarsOf $.etcd_group \"etcd_address\")."},
			"members":   {Type: Any, Doc: "The member list (a list of {id, name}) of an `etcd` members call, to name the leader; default: the list of the first host in hosts whose status result has one (status registers it)."},
		}}
}

// Run adds the results up.
func (m EtcdReport) Run(_ context.Context, _ *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("etcd_report", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	results, _ := a.m["results"].(map[string]any)
	addresses, _ := a.m["addresses"].(map[string]any)
	var members []map[string]any
	if l, ok := a.m["members"].([]any); ok {
		for _, x := range l {
			if mm, ok := x.(map[string]any); ok {
				members = append(members, mm)
			}
		}
	}
	hosts := a.list("hosts")
	if !a.has("members") {
		// Every voting member's status registers the list; the first
		// host that answered names them (the others agree or are behind).
		for _, h := range hosts {
			s, _ := results[h].(map[string]any)
			if l, ok := s["members"].([]any); ok {
				for _, x := range l {
					if mm, ok := x.(map[string]any); ok {
						members = append(members, mm)
					}
				}
				break
			}
		}
	}
	healthy, leader := 0, ""
	var lines []string
	for _, h := range hosts {
		addr := fmt.Sprint(addresses[h])
		s, reached := results[h].(map[string]any)
		switch {
		case !reached:
			lines = append(lines, fmt.Sprintf("%-10s %-16s %-11s", h, addr, "UNREACHABLE"))
		case s["raft_term"] == nil:
			lines = append(lines, fmt.Sprintf("%-10s %-16s %-11s %v", h, addr, "UNHEALTHY", s["msg"]))
		default:
			ok, _ := AsBool(s["health"])
			if ok {
				healthy++
				leader = fmt.Sprint(s["leader"])
			}
			role := ""
			if b, _ := AsBool(s["is_leader"]); b {
				role = "yes"
			} else if b, _ := AsBool(s["is_learner"]); b {
				role = "learner"
			}
			size, _ := AsInt(s["db_size"])
			line := fmt.Sprintf("%-10s %-16s %-11s %-6s %-9v %-10s %v", h, addr, map[bool]string{true: "healthy", false: "UNHEALTHY"}[ok],
				role, s["raft_term"], fmt.Sprintf("%d kB", size/1024), s["version"])
			if al, _ := toList(s["alarms"]); len(al) > 0 {
				line += " ALARM " + strings.Join(al, ",")
			}
			lines = append(lines, line)
		}
	}
	var names []string
	for _, mm := range members {
		if fmt.Sprint(mm["id"]) == leader && leader != "" {
			leader = fmt.Sprint(mm["name"])
		}
		names = append(names, fmt.Sprintf("%v (%v)", mm["name"], mm["id"]))
	}
	shownLeader := leader
	if shownLeader == "" {
		shownLeader = "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "etcd: %d/%d members healthy, leader: %s\n", healthy, len(hosts), shownLeader)
	fmt.Fprintf(&b, "%-10s %-16s %-11s %-6s %-9s %-10s %s\n", "MEMBER", "ADDRESS", "HEALTH", "LEADER", "RAFT TERM", "DB SIZE", "VERSION")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("members: " + strings.Join(names, ", "))
	// What the recipe reads from the leader's /v2/stats/leader: its round
	// trip to each follower (from its /metrics on v3).
	for _, h := range hosts {
		s, _ := results[h].(map[string]any)
		rtt, hasRTT := s["peer_round_trip_ms"].(map[string]any)
		if isLeader, _ := AsBool(s["is_leader"]); !isLeader || !hasRTT {
			continue
		}
		fmt.Fprintf(&b, "\nleader %s, round trip to each follower (mean, from its /metrics):", h)
		if len(rtt) == 0 {
			b.WriteString(" not measured yet")
		}
		for _, name := range slices.Sorted(maps.Keys(rtt)) {
			fmt.Fprintf(&b, " %s %v ms", name, rtt[name])
		}
	}
	return &Result{Msg: fmt.Sprintf("etcd: %d/%d members healthy, leader: %s", healthy, len(hosts), shownLeader),
		Data: map[string]any{"healthy": healthy, "leader": leader, "report": b.String()}}, nil
}
