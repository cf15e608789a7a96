package modules

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// etcdFirstAnswering picks the endpoint the action talks to, as etcdctl
// does with several --endpoints, but with care for membership changes: the
// first healthy voting member; failing that the first voting member that
// answers; failing that the first endpoint that answers at all. A learner
// refuses member list and changes ("rpc not supported for learner"), and
// a member without a leader cannot commit them.
func etcdFirstAnswering(ctx context.Context, c *http.Client, endpoints []string) (string, error) {
	var errs []error
	var voter, any string
	for _, e := range endpoints {
		actx, cancel := context.WithTimeout(ctx, etcdProbeTimeout)
		ec := &etcdClient{c: c, endpoint: e}
		var st etcdStatus
		err := ec.post(actx, "/v3/maintenance/status", struct{}{}, &st)
		healthy := false
		if err == nil {
			healthy, _, err = ec.health(actx)
		}
		cancel()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", e, err))
			continue
		case st.IsLearner:
		case healthy:
			return e, nil
		case voter == "":
			voter = e
		}
		if any == "" {
			any = e
		}
	}
	if voter != "" {
		return voter, nil
	}
	if any != "" {
		return any, nil
	}
	return "", fmt.Errorf("no endpoint answered: %w", errors.Join(errs...))
}

// etcdProbeTimeout bounds one health probe of a member: a powered-off
// member's address may swallow packets, and the answer of a live one takes
// milliseconds.
const etcdProbeTimeout = 3 * time.Second

// etcdFindMember returns the member named p.name or with id p.id.
func etcdFindMember(ms []etcdMember, p *etcdParams) (*etcdMember, error) {
	var id uint64
	if p.id != "" {
		id, _ = strconv.ParseUint(p.id, 16, 64) // validated by etcdParseArgs
	}
	var target *etcdMember
	for i, m := range ms {
		if (p.id != "" && uint64(m.ID) == id) || (p.name != "" && m.Name == p.name) {
			if target != nil {
				return nil, fmt.Errorf("more than one member named %q; use its id", p.name)
			}
			target = &ms[i]
		}
	}
	return target, nil
}

// etcdLookupMember lists the members and finds the one p names (nil when
// absent); who is how messages name it (its name, else its id).
func etcdLookupMember(ctx context.Context, ec *etcdClient, p *etcdParams) (ms etcdMembers, target *etcdMember, who string, err error) {
	if err = ec.post(ctx, "/v3/cluster/member/list", struct{}{}, &ms); err != nil {
		return ms, nil, "", err
	}
	if target, err = etcdFindMember(ms.Members, p); err != nil {
		return ms, nil, "", err
	}
	who = p.name
	if who == "" {
		who = p.id
	}
	return ms, target, who, nil
}

// etcdMemberHealthy asks one member, at its advertised client URLs, for
// its health; "" means healthy, otherwise why not.
func etcdMemberHealthy(ctx context.Context, c *http.Client, m etcdMember) string {
	if len(m.ClientURLs) == 0 {
		return "never started (no client URL)"
	}
	var why []string
	for _, u := range m.ClientURLs {
		actx, cancel := context.WithTimeout(ctx, etcdProbeTimeout)
		ok, reason, err := (&etcdClient{c: c, endpoint: strings.TrimRight(u, "/")}).health(actx)
		cancel()
		switch {
		case err != nil:
			why = append(why, pkiErrText(err))
		case !ok && reason != "":
			why = append(why, "unhealthy: "+reason)
		case !ok:
			why = append(why, "unhealthy")
		default:
			return ""
		}
	}
	return strings.Join(why, "; ")
}

// etcdOthersUnhealthy asks every voting member but target for its health:
// how many members vote, and the unhealthy ones with why.
func etcdOthersUnhealthy(ctx context.Context, ec *etcdClient, ms etcdMembers, target *etcdMember) (voters int, bad []string) {
	for _, m := range ms.Members {
		if m.IsLearner {
			continue
		}
		voters++
		if m.ID == target.ID {
			continue
		}
		if why := etcdMemberHealthy(ctx, ec.c, m); why != "" {
			name := m.Name
			if name == "" {
				name = m.ID.hex()
			}
			bad = append(bad, fmt.Sprintf("%s (%s)", name, why))
		}
	}
	return voters, bad
}

// etcdQuorumGuard refuses a removal that could cost the cluster its
// quorum: every other voting member must be healthy, and the target must
// not be the last voting member. Removing a member that is down (the
// replacement of a dead host) is fine while all the others are healthy.
func etcdQuorumGuard(ctx context.Context, ec *etcdClient, p *etcdParams) error {
	ms, target, who, err := etcdLookupMember(ctx, ec, p)
	if err != nil || target == nil || target.IsLearner {
		return err // absent: nothing to remove; a learner does not vote
	}
	if target.Name != "" {
		who = target.Name
	}
	voters, bad := etcdOthersUnhealthy(ctx, ec, ms, target)
	if voters == 1 {
		return fmt.Errorf("refusing to remove %s: it is the last voting member, and the cluster would be gone. Nothing was changed", who)
	}
	if len(bad) > 0 {
		after, quorum := voters-1-len(bad), (voters-1)/2+1
		return fmt.Errorf("refusing to remove %s: the cluster is already degraded, %d of its %d other voting members are unhealthy: %s. "+
			"Without %s, %d healthy of %d voting members would remain (quorum %d)%s. "+
			"Bring the unhealthy members back, or remove them first, then retry. Nothing was changed",
			who, len(bad), voters-1, strings.Join(bad, ", "), who, after, voters-1, quorum,
			map[bool]string{true: ": the quorum would be lost", false: ", and one more failure would lose it"}[after < quorum])
	}
	return nil
}

// etcdRestartCheck says whether target may restart now: every other voting
// member healthy. A restart while another member is down could leave the
// cluster without a quorum (two of three down), and even when it would
// not, it spends the cluster's last spare; the operator decides that, not
// a configuration change. A learner, or a cluster of one, restarts freely.
func etcdRestartCheck(ctx context.Context, ec *etcdClient, p *etcdParams) (*Result, error) {
	ms, target, who, err := etcdLookupMember(ctx, ec, p)
	if err != nil {
		return nil, err
	}
	if target == nil {
		return nil, fmt.Errorf("member %s is not in the cluster", who)
	}
	data := map[string]any{"members": etcdMemberList(ms.Members)}
	if target.IsLearner {
		return &Result{Msg: fmt.Sprintf("%s is a learner: its restart costs no vote", who), Data: data}, nil
	}
	voters, bad := etcdOthersUnhealthy(ctx, ec, ms, target)
	if len(bad) > 0 {
		during, quorum := voters-1-len(bad), voters/2+1
		return nil, fmt.Errorf("refusing to restart %s: %d of the %d other voting members are unhealthy: %s. "+
			"While %s restarts, %d of %d voting members would be up (quorum %d)%s. "+
			"Bring the unhealthy members back (or remove them), then run again: %s keeps running until then, "+
			"and its new configuration is applied by that run",
			who, len(bad), voters-1, strings.Join(bad, ", "), who, during, voters, quorum,
			map[bool]string{true: ": the cluster would stop", false: ", with nothing left to spare"}[during < quorum], who)
	}
	return &Result{Msg: fmt.Sprintf("the %d other voting members are healthy: %s may restart", voters-1, who), Data: data}, nil
}

// etcdMemberPromote promotes a learner; a voting member is left alone.
// etcd refuses while the learner lags the leader ("can only promote a
// learner member which is in sync with leader"): the task retries.
func etcdMemberPromote(ctx context.Context, ec *etcdClient, p *etcdParams, check bool) (*Result, error) {
	ms, target, who, err := etcdLookupMember(ctx, ec, p)
	if err != nil {
		return nil, err
	}
	if target == nil {
		return nil, fmt.Errorf("member %s is not in the cluster (add it first)", who)
	}
	data := map[string]any{"id": target.ID.hex(), "members": etcdMemberList(ms.Members)}
	if !target.IsLearner {
		return &Result{Msg: fmt.Sprintf("member %s (%s) votes already", who, target.ID.hex()), Data: data}, nil
	}
	if check {
		return &Result{Changed: true, Msg: fmt.Sprintf("learner %s (%s) would be promoted", who, target.ID.hex()), Data: data}, nil
	}
	var after etcdMembers
	if err := ec.post(ctx, "/v3/cluster/member/promote", map[string]any{"ID": strconv.FormatUint(uint64(target.ID), 10)}, &after); err != nil {
		return nil, err
	}
	data["members"] = etcdMemberList(after.Members)
	return &Result{Changed: true, Msg: fmt.Sprintf("learner %s (%s) promoted to a voting member", who, target.ID.hex()), Data: data}, nil
}

// alarms lists the cluster's raised alarms (POST /v3/maintenance/alarm,
// action GET): "NOSPACE", "CORRUPT".
func (e *etcdClient) alarms(ctx context.Context) ([]any, error) {
	var ar struct {
		Alarms []struct {
			MemberID etcdUint `json:"memberID"`
			Alarm    string   `json:"alarm"`
		} `json:"alarms"`
	}
	if err := e.post(ctx, "/v3/maintenance/alarm", map[string]any{"action": "GET"}, &ar); err != nil {
		return nil, err
	}
	out := []any{}
	for _, a := range ar.Alarms {
		if a.Alarm != "" && a.Alarm != "NONE" {
			out = append(out, a.Alarm)
		}
	}
	return out, nil
}

// peerRoundTrips reads etcd_network_peer_round_trip_time_seconds from the
// member's /metrics (Prometheus text): the mean round trip, in ms, to each
// peer it has measured, keyed by the peer's hex id.
func (e *etcdClient) peerRoundTrips(ctx context.Context) (map[string]any, error) {
	r, err := pkiDo(ctx, e.c, http.MethodGet, e.endpoint+"/metrics", nil, nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", r.status)
	}
	return etcdParseRoundTrips(string(r.body)), nil
}

func etcdParseRoundTrips(metrics string) map[string]any {
	const name = "etcd_network_peer_round_trip_time_seconds"
	sum, count := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		var into map[string]float64
		switch {
		case strings.HasPrefix(line, name+"_sum{"):
			into = sum
		case strings.HasPrefix(line, name+"_count{"):
			into = count
		default:
			continue
		}
		_, rest, _ := strings.Cut(line, `To="`)
		peer, rest, ok := strings.Cut(rest, `"`)
		if !ok {
			continue
		}
		_, val, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err == nil {
			into[peer] = v
		}
	}
	out := map[string]any{}
	for p, c := range count {
		// etcd observes its prober's smoothed round trip every 5 s even
		// before a probe has answered, when it is still 0: a peer whose
		// observations are all 0 has not been measured yet (seen at load
		// 90, where the first probe took longer than the first tick).
		if c > 0 && sum[p] > 0 {
			out[p] = float64(int(sum[p]/c*1e6)) / 1e3 // ms, three decimals
		}
	}
	return out
}

func etcdStrings(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	return out
}
