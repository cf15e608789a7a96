package modules

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"gokube/connection"
)

// pkiTLS describes how an HTTP client of uri, etcd and kube_health
// authenticates: files on the control machine.
type pkiTLS struct {
	caPath   string // PEM bundle of trusted CAs; "" uses the system roots
	certPath string // client certificate (PEM)
	keyPath  string // its key
	insecure bool   // validate_certs: false
}

func (o pkiTLS) config(module string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // only when validate_certs is false
	if o.caPath != "" {
		pemData, err := os.ReadFile(o.caPath)
		if err != nil {
			return nil, fmt.Errorf("%s: CA bundle: %w", module, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("%s: CA bundle %s: no PEM certificate in it", module, o.caPath)
		}
		cfg.RootCAs = pool
	}
	if (o.certPath == "") != (o.keyPath == "") {
		return nil, &ArgError{Module: module, Key: "client_key", Msg: "a client certificate needs both the certificate and the key"}
	}
	if o.certPath != "" {
		pair, err := tls.LoadX509KeyPair(o.certPath, o.keyPath)
		if err != nil {
			return nil, fmt.Errorf("%s: client certificate: %w", module, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// pkiHTTPClient returns a client whose TCP connections are opened by the
// host's connection (an SSH direct-tcpip channel), so "127.0.0.1" in a URL
// is the host's loopback. Call the returned func when done: it closes the
// idle forwarded connections.
func pkiHTTPClient(env *Env, module string, o pkiTLS, timeout time.Duration) (*http.Client, func(), error) {
	if env == nil || env.Conn == nil {
		return nil, nil, fmt.Errorf("%s: no connection to the host", module)
	}
	d, ok := env.Conn.(connection.Dialer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: the connection to %s (%T) cannot forward ports, so the service on the host cannot be reached from the control machine", module, env.Conn.Host(), env.Conn)
	}
	cfg, err := o.config(module)
	if err != nil {
		return nil, nil, err
	}
	var asked atomic.Bool
	if cfg.Certificates == nil {
		// A server that needs a client certificate may refuse one that
		// sent none only after the client's handshake has ended (TLS 1.3),
		// and the client then reads the alert or, as often, a reset: so
		// note that the server asked, and say so with whatever error
		// follows. Sending none is still right: apiservers ask and accept
		// other credentials.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)
			return &tls.Certificate{}, nil
		}
	}
	tr := &http.Transport{
		// Proxy stays nil on purpose: the request leaves from the host, and
		// the control machine's proxy settings mean nothing there.
		DialContext:           d.DialContext,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{Transport: certHint{tr, &asked}, Timeout: timeout}, tr.CloseIdleConnections, nil
}

// certHint adds to a failed exchange that the server asked for a client
// certificate none was configured for.
type certHint struct {
	tr    *http.Transport
	asked *atomic.Bool
}

// withTransport is the same hint on another transport (a clone).
func (h certHint) withTransport(tr *http.Transport) certHint { return certHint{tr, h.asked} }

func (h certHint) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.tr.RoundTrip(r)
	if err != nil && h.asked.Load() {
		err = fmt.Errorf("%w (the server asked for a client certificate and none was given: client_cert and client_key)", err)
	}
	return resp, err
}

// pkiResponse is one HTTP exchange, its body read (up to a limit).
type pkiResponse struct {
	status      int
	body        []byte
	contentType string
	header      http.Header
	url         string
}

// pkiMaxBody bounds what a health or API answer may occupy in memory.
const pkiMaxBody = 16 << 20

func pkiDo(ctx context.Context, c *http.Client, method, url string, body []byte, header map[string]string) (*pkiResponse, error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, pkiMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	if len(b) > pkiMaxBody {
		return nil, fmt.Errorf("%s %s: body larger than %d bytes", method, url, pkiMaxBody)
	}
	return &pkiResponse{status: resp.StatusCode, body: b, contentType: resp.Header.Get("Content-Type"), header: resp.Header, url: resp.Request.URL.String()}, nil
}

// pkiHostErr picks the errors that end the task as errors rather than as a
// failed check: a lost host connection (the engine reports the host
// UNREACHABLE) and a cancelled run. A service that does not answer, or
// answers badly, is a failed task instead, with its data registered.
func pkiHostErr(err error) error {
	if connection.IsUnreachable(err) || errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// pkiErrText says "timed out" first when that is what happened: Go's
// wording of a timeout is buried at the end of a long chain.
func pkiErrText(err error) string {
	s := err.Error()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out: " + s
	}
	return s
}
