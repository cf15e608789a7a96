package modules

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// etcdTokenRe: a token becomes part of a key path on the discovery cluster.
var etcdTokenRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// etcdRegistry is where etcd's discovery clients (v2 and v3 alike) look for
// a token: <prefix>/<token>/_config/size holds the cluster size, and the
// members register beside it (v2: <token>/<id>, v3: <token>/members/<id>).
const etcdRegistry = "/_etcd/registry"

// etcdDiscoveryToken creates the token a new cluster bootstraps from, as the
// recipe's discovery service does (`new?size=n`), on the existing cluster
// behind ec.
func etcdDiscoveryToken(ctx context.Context, ec *etcdClient, p *etcdParams, check bool) (*Result, error) {
	var (
		size       string
		found      bool
		registered int
		err        error
	)
	if p.protocol == "v2" {
		size, found, registered, err = etcdV2Token(ctx, ec, p.token)
	} else {
		size, found, registered, err = etcdV3Token(ctx, ec, p.token)
	}
	if err != nil {
		return nil, err
	}
	want := strconv.Itoa(p.size)
	data := map[string]any{"token": p.token, "size": p.size, "registered": registered}
	if p.protocol == "v2" {
		data["url"] = ec.endpoint + "/v2/keys" + etcdRegistry + "/" + p.token
	}
	switch {
	case found && size != want:
		return nil, fmt.Errorf("discovery token %s exists for a cluster of %s members, not %d: choose another token (each bootstrap needs a new one)", p.token, size, p.size)
	case found:
		return &Result{Msg: fmt.Sprintf("discovery token %s present (size %s, %d registered)", p.token, size, registered), Data: data}, nil
	case check:
		return &Result{Changed: true, Msg: fmt.Sprintf("discovery token %s would be created (size %d)", p.token, p.size), Data: data}, nil
	}
	if p.protocol == "v2" {
		err = etcdV2Put(ctx, ec, etcdRegistry+"/"+p.token+"/_config/size", want)
	} else {
		err = etcdV3Create(ctx, ec, etcdRegistry+"/"+p.token+"/_config/size", want)
	}
	if err != nil {
		return nil, err
	}
	return &Result{Changed: true, Msg: fmt.Sprintf("discovery token %s created (size %d)", p.token, p.size), Data: data}, nil
}

func etcdB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

type etcdKV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type etcdRange struct {
	KVs   []etcdKV `json:"kvs"`
	Count etcdUint `json:"count"`
}

// etcdV3Token reads the token's size key and counts its registered members.
func etcdV3Token(ctx context.Context, ec *etcdClient, token string) (size string, found bool, registered int, err error) {
	var r etcdRange
	if err := ec.post(ctx, "/v3/kv/range", map[string]any{"key": etcdB64(etcdRegistry + "/" + token + "/_config/size")}, &r); err != nil {
		return "", false, 0, err
	}
	if len(r.KVs) > 0 {
		v, err := base64.StdEncoding.DecodeString(r.KVs[0].Value)
		if err != nil {
			return "", false, 0, fmt.Errorf("size key: %w", err)
		}
		size, found = string(v), true
	}
	prefix := etcdRegistry + "/" + token + "/members/"
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	var c etcdRange
	if err := ec.post(ctx, "/v3/kv/range", map[string]any{"key": etcdB64(prefix), "range_end": etcdB64(end), "count_only": true}, &c); err != nil {
		return "", false, 0, err
	}
	return size, found, int(c.Count), nil
}

// etcdV3Create puts key only if it does not exist (a transaction), so two
// runs racing cannot give one token two sizes.
func etcdV3Create(ctx context.Context, ec *etcdClient, key, value string) error {
	txn := map[string]any{
		"compare": []any{map[string]any{"key": etcdB64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}},
		"success": []any{map[string]any{"request_put": map[string]any{"key": etcdB64(key), "value": etcdB64(value)}}},
	}
	var out struct {
		Succeeded bool `json:"succeeded"`
	}
	if err := ec.post(ctx, "/v3/kv/txn", txn, &out); err != nil {
		return err
	}
	if !out.Succeeded {
		return fmt.Errorf("%s was created by someone else meanwhile; run again", key)
	}
	return nil
}

type etcdV2Node struct {
	Key   string       `json:"key"`
	Value string       `json:"value"`
	Dir   bool         `json:"dir"`
	Nodes []etcdV2Node `json:"nodes"`
}

// etcdV2NoAPI explains a discovery cluster without the v2 keys API, which
// only the v2 discovery of etcd 3.4/3.5 members needs.
const etcdV2NoAPI = "the discovery cluster serves no v2 keys API there: v2 discovery (etcd 3.4/3.5 members) needs a discovery cluster of etcd 3.4 or 3.5 with etcd_enable_v2 and a plain-HTTP client listener (etcd_listen_client_plain_url), because etcd 3.4's discovery client cannot present a client certificate or trust a private CA"

// etcdV2Get reads a key or directory through the v2 API; found is false for
// etcd's "Key not found" (errorCode 100).
func etcdV2Get(ctx context.Context, ec *etcdClient, key string) (node etcdV2Node, found bool, err error) {
	r, err := pkiDo(ctx, ec.c, http.MethodGet, ec.endpoint+"/v2/keys"+key, nil, nil)
	if err != nil {
		return node, false, err
	}
	var body struct {
		ErrorCode int        `json:"errorCode"`
		Node      etcdV2Node `json:"node"`
	}
	if jerr := json.Unmarshal(r.body, &body); jerr != nil {
		return node, false, fmt.Errorf("GET /v2/keys%s: HTTP %d: %s", key, r.status, etcdV2NoAPI)
	}
	switch {
	case r.status == http.StatusNotFound && body.ErrorCode == 100:
		return node, false, nil
	case r.status != http.StatusOK:
		return node, false, fmt.Errorf("GET /v2/keys%s: HTTP %d: %s", key, r.status, strings.TrimSpace(string(pkiTruncate(r.body, 300))))
	}
	return body.Node, true, nil
}

func etcdV2Token(ctx context.Context, ec *etcdClient, token string) (size string, found bool, registered int, err error) {
	n, found, err := etcdV2Get(ctx, ec, etcdRegistry+"/"+token+"/_config/size")
	if err != nil || !found {
		return "", false, 0, err
	}
	dir, _, err := etcdV2Get(ctx, ec, etcdRegistry+"/"+token)
	if err != nil {
		return "", false, 0, err
	}
	for _, m := range dir.Nodes {
		if !strings.HasSuffix(m.Key, "/_config") {
			registered++
		}
	}
	return n.Value, true, registered, nil
}

// etcdV2Put creates key (prevExist=false: a racing run cannot overwrite it).
func etcdV2Put(ctx context.Context, ec *etcdClient, key, value string) error {
	form := url.Values{"value": {value}, "prevExist": {"false"}}
	r, err := pkiDo(ctx, ec.c, http.MethodPut, ec.endpoint+"/v2/keys"+key, []byte(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if err != nil {
		return err
	}
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		return fmt.Errorf("PUT /v2/keys%s: HTTP %d: %s", key, r.status, strings.TrimSpace(string(pkiTruncate(r.body, 300))))
	}
	return nil
}
