package modules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gokube/connection"
)

// URI is the `uri` module: one HTTP(S) request.
//
// By default (via: connection) the request is made by the control machine,
// its TCP connection opened through the host's connection, so
// https://127.0.0.1:2379 is the host's loopback and no tool is needed on the
// host; ca_path, client_cert and client_key are then files on the control
// machine. With via: host the host runs curl (one round trip) and those paths
// are files on the host.
//
// Arguments: url (required), method (GET), body, body_format (raw or json;
// a map or list body is sent as JSON), headers (map), status_code (an int or
// a list, default 200), return_content, validate_certs (true), ca_path,
// client_cert, client_key, timeout (seconds, default 30), via.
//
// Registers: status (-1 when no answer), content (with return_content),
// json (when the answer is JSON), content_type, msg, url, elapsed (seconds).
// It changes nothing: under check mode GET, HEAD and OPTIONS are sent and
// other methods are skipped, since they may change the service.
type URI struct{}

// Spec declares the uri arguments.
func (URI) Spec() Spec {
	return Spec{
		Doc: "One HTTP(S) request. By default the control machine makes it through the host's connection (127.0.0.1 is the host's loopback; no tool on the host); via host runs curl on the host. It changes nothing: check mode sends GET, HEAD and OPTIONS and skips other methods.",
		Returns: map[string]string{
			"content":      "the body (with return_content)",
			"content_type": "Content-Type",
			"elapsed":      "seconds",
			"json":         "the body decoded, when it is JSON",
			"msg":          "what happened",
			"status":       "HTTP status (-1 when no answer)",
			"url":          "the URL",
		},
		Args: map[string]Arg{
			"url":            {Type: String, Required: true, Kind: URL, Doc: "URL as seen from the host."},
			"method":         {Type: String, Doc: "HTTP method.", Default: "GET"},
			"body":           {Type: Any, Doc: "Request body; a mapping or list is sent as JSON."},
			"body_format":    {Type: String, Choices: []string{"raw", "json"}, Doc: "raw or json.", Default: "raw"},
			"headers":        {Type: Map, Doc: "Request headers (mapping)."},
			"status_code":    {Type: Any, Kind: HTTPStatus, Doc: "Accepted status code or list of codes.", Default: "200"},
			"return_content": {Type: Bool, Doc: "Register the body as content.", Default: "no"},
			"validate_certs": {Type: Bool, Doc: "Verify the server's certificate.", Default: "yes"},
			"ca_path":        {Type: String, Doc: "CA certificate file (on the control machine; on the host with via host)."},
			"client_cert":    {Type: String, Doc: "Client certificate file (control machine; host with via host)."},
			"client_key":     {Type: String, Doc: "Client key file (control machine; host with via host)."},
			"timeout":        {Type: Int, Doc: "Seconds for the request.", Default: "30"},
			"via":            {Type: String, Choices: []string{"connection", "host"}, Doc: "connection: the control machine sends through the host's connection; host: curl on the host.", Default: "connection"},
		}}
}

type uriParams struct {
	url, method   string
	body          []byte
	hasBody       bool
	headers       map[string]string
	status        []int
	returnContent bool
	tls           pkiTLS
	timeout       time.Duration
	via           string
}

func uriParseArgs(args map[string]any) (*uriParams, error) {
	a, err := parseArgs("uri", URI{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	p := &uriParams{}
	p.url = a.str("url")
	u, err := url.Parse(p.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, a.err("url", "want an http:// or https:// URL, got %q", p.url)
	}
	p.method = a.strOr("method", "GET")
	p.method = strings.ToUpper(p.method)
	if p.method == "" || strings.ContainsAny(p.method, " \t\r\n") {
		return nil, a.err("method", "invalid method %q", p.method)
	}
	if p.headers, err = a.stringMap("headers"); err != nil {
		return nil, err
	}
	if p.headers == nil {
		p.headers = map[string]string{}
	}
	format := a.strOr("body_format", "raw")
	if a.has("body") {
		p.hasBody = true
		b := a.m["body"]
		_, structured := b.(map[string]any)
		if _, ok := b.([]any); ok {
			structured = true
		}
		switch {
		case format == "json" || structured:
			if s, ok := b.(string); ok && json.Valid([]byte(s)) {
				p.body = []byte(s) // already JSON text
			} else if p.body, err = json.Marshal(b); err != nil {
				return nil, a.err("body", "cannot encode as JSON: %v", err)
			}
			if !pkiHasHeader(p.headers, "Content-Type") {
				p.headers["Content-Type"] = "application/json"
			}
		default:
			s := a.str("body")
			p.body = []byte(s)
		}
	}
	if p.status, err = uriStatusCodes(a); err != nil {
		return nil, err
	}
	p.returnContent = a.boolean("return_content", false)
	validate := a.boolean("validate_certs", true)
	p.tls.insecure = !validate
	p.tls.caPath = a.str("ca_path")
	p.tls.certPath = a.str("client_cert")
	p.tls.keyPath = a.str("client_key")
	if (p.tls.certPath == "") != (p.tls.keyPath == "") {
		return nil, a.err("client_key", "client_cert and client_key go together")
	}
	if p.timeout, err = a.seconds("timeout", 30*time.Second); err != nil {
		return nil, err
	}
	p.via = a.strOr("via", "connection")
	return p, nil
}

func uriStatusCodes(a cargs) ([]int, error) {
	v, ok := a.m["status_code"]
	if !ok || v == nil {
		return []int{200}, nil
	}
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	case string:
		for _, s := range strings.Split(t, ",") {
			items = append(items, strings.TrimSpace(s))
		}
	default:
		items = []any{t}
	}
	var out []int
	for _, it := range items {
		n, ok := AsInt(it)
		if !ok || n < 100 || n > 599 {
			return nil, a.err("status_code", "%v is not an HTTP status code", it)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, a.err("status_code", "empty")
	}
	return out, nil
}

func pkiHasHeader(h map[string]string, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func uriSafeMethod(m string) bool { return m == "GET" || m == "HEAD" || m == "OPTIONS" }

// Run sends the request.
func (URI) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := uriParseArgs(args)
	if err != nil {
		return nil, err
	}
	if env != nil && env.Check && !uriSafeMethod(p.method) {
		return &Result{Skipped: true, Msg: "check mode: " + p.method + " " + p.url + " not sent (it may change the service)"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	var resp *pkiResponse
	if p.via == "host" {
		resp, err = uriViaHost(ctx, env, p)
	} else {
		// Setup errors (no port forwarding, unreadable certificate files)
		// are errors of the task's configuration, not a failed request.
		client, done, cerr := pkiHTTPClient(env, "uri", p.tls, p.timeout)
		if cerr != nil {
			return nil, cerr
		}
		defer done()
		resp, err = pkiDo(ctx, client, p.method, p.url, p.body, p.headers)
	}
	elapsed := time.Since(start).Seconds()
	if err != nil {
		if hostErr := pkiHostErr(err); hostErr != nil {
			return nil, hostErr
		}
		var ae *ArgError
		if errors.As(err, &ae) {
			return nil, err
		}
		msg := "request failed: " + pkiErrText(err)
		return &Result{Failed: true, Msg: msg, Data: map[string]any{
			"status": -1, "url": p.url, "msg": msg, "elapsed": elapsed,
		}}, nil
	}
	return uriResult(p, resp, elapsed), nil
}

// uriMarker separates the body from the status code curl writes after it;
// it is unlikely in a body, and only its last occurrence counts.
const uriMarker = "\n__gokube_uri_status__"

func uriCurlScript(p *uriParams) string {
	args := []string{"curl", "-sS", "--max-time", strconv.Itoa(int(p.timeout.Seconds())),
		"-w", uriMarker + "%{http_code} %{content_type}\n%{url_effective}", "-L", "--max-redirs", "10"}
	// -I is curl's HEAD; -X HEAD would wait for a body that never comes.
	if p.method == "HEAD" {
		args = append(args, "-I")
	} else {
		args = append(args, "-X", p.method)
	}
	if p.tls.insecure {
		args = append(args, "-k")
	}
	if p.tls.caPath != "" {
		args = append(args, "--cacert", p.tls.caPath)
	}
	if p.tls.certPath != "" {
		args = append(args, "--cert", p.tls.certPath, "--key", p.tls.keyPath)
	}
	keys := make([]string, 0, len(p.headers))
	for k := range p.headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-H", k+": "+p.headers[k])
	}
	if p.hasBody {
		args = append(args, "--data-binary", "@-")
	}
	args = append(args, "--", p.url)
	q := make([]string, len(args))
	for i, s := range args {
		q[i] = pkiShellQuote(s)
	}
	return "command -v curl >/dev/null 2>&1 || { echo 'curl is not installed on this host (use via: connection)' >&2; exit 127; }\nexec " + strings.Join(q, " ")
}

func uriViaHost(ctx context.Context, env *Env, p *uriParams) (*pkiResponse, error) {
	if env == nil || env.Conn == nil {
		return nil, fmt.Errorf("uri: no connection to the host")
	}
	// become matters here: the client key on the host is usually root's.
	req := connection.Request{Script: uriCurlScript(p), ReadOnly: uriSafeMethod(p.method),
		Become: env.Become, BecomeUser: env.BecomeUser, Env: env.Environment}
	if p.hasBody {
		req.Stdin = p.body
	}
	res, err := env.Conn.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.RC != 0 {
		return nil, fmt.Errorf("curl exited %d: %s", res.RC, strings.TrimSpace(string(res.Stderr)))
	}
	return uriParseCurl(res.Stdout, p.url)
}

// uriParseCurl splits curl's output: the body, then the marker, the status
// code, the content type and, on the next line, the effective URL.
func uriParseCurl(out []byte, reqURL string) (*pkiResponse, error) {
	i := bytes.LastIndex(out, []byte(uriMarker))
	if i < 0 {
		return nil, fmt.Errorf("curl: unexpected output %q", pkiTruncate(out, 200))
	}
	tail := string(out[i+len(uriMarker):])
	first, effURL, _ := strings.Cut(tail, "\n")
	code, ctype, _ := strings.Cut(first, " ")
	status, err := strconv.Atoi(code)
	if err != nil || status < 0 || status > 999 {
		return nil, fmt.Errorf("curl: bad status %q", code)
	}
	if effURL == "" {
		effURL = reqURL
	}
	return &pkiResponse{status: status, body: out[:i], contentType: ctype, url: effURL}, nil
}

func pkiTruncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func uriResult(p *uriParams, r *pkiResponse, elapsed float64) *Result {
	data := map[string]any{
		"status":       r.status,
		"url":          r.url,
		"content_type": r.contentType,
		"elapsed":      elapsed,
	}
	if p.returnContent {
		data["content"] = string(r.body)
	}
	if strings.Contains(r.contentType, "json") || (len(r.body) > 0 && (r.body[0] == '{' || r.body[0] == '[')) {
		var v any
		if json.Unmarshal(r.body, &v) == nil {
			data["json"] = v
		}
	}
	res := &Result{Data: data}
	if slices.Contains(p.status, r.status) {
		res.Msg = fmt.Sprintf("OK (%d bytes)", len(r.body))
	} else {
		res.Failed = true
		snippet := strings.TrimSpace(string(pkiTruncate(r.body, 300)))
		res.Msg = fmt.Sprintf("Status code was %d and not %v: %s", r.status, p.status, snippet)
	}
	data["msg"] = res.Msg
	return res
}

// pkiShellQuote quotes s for /bin/sh.
func pkiShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
