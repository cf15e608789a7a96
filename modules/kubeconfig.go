package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"gokube/internal/atomicfile"

	"gopkg.in/yaml.v3"
)

// Kubeconfig is the `kubeconfig` module: a kubeconfig file with the CA,
// client certificate and key embedded, written on the control machine from
// files the x509 module made there (like x509 it never contacts the host;
// roles copy the result). Embedding makes the file usable wherever it is
// copied: on a master as /root/.kube/config, or on the control machine.
//
// Arguments: dest (file on the control machine, written 0600), server
// (https URL), ca_cert, client_cert, client_key (files on the control
// machine), cluster (default "kubernetes"), user (default "admin").
//
// Changed only when the file's bytes would differ (a certificate was
// renewed, the server moved). Registers dest and server.
type Kubeconfig struct{}

// Spec declares the kubeconfig arguments.
func (Kubeconfig) Spec() Spec {
	return Spec{
		Doc:     "A kubeconfig with the CA, client certificate and key embedded, written (0600) on the control machine when its content would change; roles copy it to hosts. Never contacts the host.",
		Returns: map[string]string{"dest": "the file written", "server": "the apiserver URL in it"},
		Args: map[string]Arg{
			"dest":        {Type: String, Required: true, Doc: "File on the control machine."},
			"server":      {Type: String, Required: true, Kind: URL, Doc: "Apiserver URL (https://...)."},
			"ca_cert":     {Type: String, Required: true, Doc: "CA certificate file on the control machine."},
			"client_cert": {Type: String, Required: true, Doc: "Client certificate file on the control machine."},
			"client_key":  {Type: String, Required: true, Doc: "Client key file on the control machine."},
			"cluster":     {Type: String, Doc: "Cluster name in the file.", Default: "kubernetes"},
			"user":        {Type: String, Doc: "User name in the file.", Default: "admin"},
		}}
}

type kubeconfigParams struct {
	dest, server, ca, cert, key, cluster, user string
}

func kubeconfigParseArgs(args map[string]any) (*kubeconfigParams, error) {
	a, err := parseArgs("kubeconfig", Kubeconfig{}.Spec(), args)
	if err != nil {
		return nil, err
	}
	p := &kubeconfigParams{
		dest: a.str("dest"), server: a.str("server"), ca: a.str("ca_cert"),
		cert: a.str("client_cert"), key: a.str("client_key"),
		cluster: a.strOr("cluster", "kubernetes"), user: a.strOr("user", "admin"),
	}
	if u, err := url.Parse(p.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, a.err("server", "want an https:// URL such as https://10.0.0.10:6443, got %q", p.server)
	}
	if p.dest == "" {
		return nil, a.err("dest", "must not be empty")
	}
	return p, nil
}

// kubeconfigFile is the subset of clientcmd's v1 Config that gokube writes.
type kubeconfigFile struct {
	APIVersion     string            `yaml:"apiVersion"`
	Kind           string            `yaml:"kind"`
	Clusters       []kubeconfigNamed `yaml:"clusters"`
	Contexts       []kubeconfigNamed `yaml:"contexts"`
	CurrentContext string            `yaml:"current-context"`
	Users          []kubeconfigNamed `yaml:"users"`
	Preferences    struct{}          `yaml:"preferences"`
}

type kubeconfigNamed struct {
	Name    string            `yaml:"name"`
	Cluster map[string]string `yaml:"cluster,omitempty"`
	Context map[string]string `yaml:"context,omitempty"`
	User    map[string]string `yaml:"user,omitempty"`
}

// Render builds the file's bytes from the PEM files.
func (p *kubeconfigParams) render() ([]byte, error) {
	read := func(path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("kubeconfig %s: %w", p.dest, err)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	ca, err := read(p.ca)
	if err != nil {
		return nil, err
	}
	cert, err := read(p.cert)
	if err != nil {
		return nil, err
	}
	key, err := read(p.key)
	if err != nil {
		return nil, err
	}
	ctxName := p.user + "@" + p.cluster
	f := kubeconfigFile{
		APIVersion: "v1", Kind: "Config", CurrentContext: ctxName,
		Clusters: []kubeconfigNamed{{Name: p.cluster, Cluster: map[string]string{
			"certificate-authority-data": ca, "server": p.server}}},
		Contexts: []kubeconfigNamed{{Name: ctxName, Context: map[string]string{"cluster": p.cluster, "user": p.user}}},
		Users: []kubeconfigNamed{{Name: p.user, User: map[string]string{
			"client-certificate-data": cert, "client-key-data": key}}},
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", p.dest, err)
	}
	return b.Bytes(), nil
}

// Run writes the file when its content differs.
func (Kubeconfig) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := kubeconfigParseArgs(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data := map[string]any{"dest": p.dest, "server": p.server}
	check := env != nil && env.Check
	want, err := p.render()
	if err != nil {
		if check && errors.Is(err, fs.ErrNotExist) {
			// The x509 tasks earlier in this run would create the files.
			return &Result{Changed: true, Data: data, Msg: "certificates made earlier in this run"}, nil
		}
		return nil, err
	}
	have, err := os.ReadFile(p.dest)
	fi, statErr := os.Stat(p.dest)
	if err == nil && statErr == nil && bytes.Equal(have, want) && fi.Mode().Perm() == 0o600 {
		return &Result{Data: data}, nil
	}
	if check {
		return &Result{Changed: true, Data: data}, nil
	}
	if err := os.MkdirAll(filepath.Dir(p.dest), 0o700); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	// Embedded keys: owner only, as kubespray writes admin.conf.
	if err := atomicfile.Write(p.dest, want, 0o600); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", p.dest, err)
	}
	return &Result{Changed: true, Data: data}, nil
}
