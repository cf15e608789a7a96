package modules

// The etcd module's client: the JSON gateway's types, one request with
// retries of what is transient, the leader and health reads.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// etcdUint is a uint64 of the gateway's JSON, which encodes 64-bit integers
// as strings (and omits zero values).
type etcdUint uint64

func (u *etcdUint) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	if s == "" || s == "null" {
		*u = 0
		return nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("etcd: bad integer %s: %w", b, err)
	}
	*u = etcdUint(n)
	return nil
}

func (u etcdUint) hex() string { return strconv.FormatUint(uint64(u), 16) }

type etcdHeader struct {
	ClusterID etcdUint `json:"cluster_id"`
	MemberID  etcdUint `json:"member_id"`
	Revision  etcdUint `json:"revision"`
	RaftTerm  etcdUint `json:"raft_term"`
}

type etcdStatus struct {
	Header           etcdHeader `json:"header"`
	Version          string     `json:"version"`
	DBSize           etcdUint   `json:"dbSize"`
	DBSizeInUse      etcdUint   `json:"dbSizeInUse"`
	Leader           etcdUint   `json:"leader"`
	RaftIndex        etcdUint   `json:"raftIndex"`
	RaftTerm         etcdUint   `json:"raftTerm"`
	RaftAppliedIndex etcdUint   `json:"raftAppliedIndex"`
	IsLearner        bool       `json:"isLearner"`
	Errors           []string   `json:"errors"`
}

type etcdMember struct {
	ID         etcdUint `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

type etcdMembers struct {
	Header  etcdHeader   `json:"header"`
	Member  *etcdMember  `json:"member"` // member_add's answer
	Members []etcdMember `json:"members"`
}

// etcdAPIError is the gateway's error body.
type etcdAPIError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Code    int    `json:"code"`
}

type etcdClient struct {
	c        *http.Client
	endpoint string
}

// etcdTransient reports etcd's answers to a membership change that mean
// "not now": a member connected for less than the health interval (common
// just after a start), an election under way (common after removing the
// leader, when the new leader drops conf changes until its first entry
// commits).
func etcdTransient(msg string) bool {
	for _, t := range []string{
		"etcdserver: unhealthy cluster",
		"etcdserver: request timed out",
		"etcdserver: leader changed",
		"etcdserver: no leader",
		"etcdserver: too many requests",
		// An abandoned attempt that landed after all: the next attempt's
		// member list shows it.
		"etcdserver: Peer URLs already exists",
		"etcdserver: member not found",
	} {
		if strings.Contains(msg, t) {
			return true
		}
	}
	return false
}

// etcdAttemptTimeout bounds one membership attempt. A conf change that a
// new leader dropped is never answered (etcd 3.4 through the gateway waits
// until the client gives up), while one that commits takes milliseconds; an
// abandoned attempt is safe because the next one lists the members first.
const etcdAttemptTimeout = 4 * time.Second

// etcdRetry runs one membership attempt after another while etcd says "not
// now", until ctx (the task's timeout) ends. Each attempt lists the members
// first, so a change that did land despite a timed-out answer is seen, not
// repeated.
func etcdRetry(ctx context.Context, attempt func(ctx context.Context) (*Result, error)) (*Result, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, etcdAttemptTimeout)
		res, err := attempt(actx)
		attemptExpired := actx.Err() != nil
		cancel()
		if err == nil || ctx.Err() != nil {
			return res, err
		}
		if !etcdTransient(err.Error()) && !(attemptExpired && errors.Is(err, context.DeadlineExceeded)) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (retried until the task timeout)", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (e *etcdClient) post(ctx context.Context, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	r, err := pkiDo(ctx, e.c, http.MethodPost, e.endpoint+path, b, map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		var ae etcdAPIError
		msg := strings.TrimSpace(string(pkiTruncate(r.body, 300)))
		if json.Unmarshal(r.body, &ae) == nil && (ae.Message != "" || ae.Error != "") {
			msg = ae.Message
			if msg == "" {
				msg = ae.Error
			}
		}
		return fmt.Errorf("POST %s: HTTP %d: %s", path, r.status, msg)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}

// requireLeader fails with etcd's own "no leader" text while the endpoint
// knows no leader among the current members (just after the leader was
// removed, followers still name it until they time out): a conf change
// proposed then is dropped without an answer.
// It returns the endpoint's status.
func (e *etcdClient) requireLeader(ctx context.Context, members []etcdMember) (*etcdStatus, error) {
	var st etcdStatus
	if err := e.post(ctx, "/v3/maintenance/status", struct{}{}, &st); err != nil {
		return nil, err
	}
	for _, m := range members {
		if st.Leader != 0 && m.ID == st.Leader {
			return &st, nil
		}
	}
	return nil, fmt.Errorf("etcdserver: no leader (leader %s is not a member; election under way)", st.Leader.hex())
}

// health reads GET /health: {"health":"true"} (HTTP 503 and "false" when
// the member has no leader or a failing alarm).
func (e *etcdClient) health(ctx context.Context) (bool, string, error) {
	r, err := pkiDo(ctx, e.c, http.MethodGet, e.endpoint+"/health", nil, nil)
	if err != nil {
		return false, "", err
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(r.body, &h); err != nil {
		return false, "", fmt.Errorf("GET /health: HTTP %d: %q", r.status, pkiTruncate(r.body, 200))
	}
	return r.status == http.StatusOK && h.Health == "true", h.Reason, nil
}
