package modules

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// slurp reads a file from the host; content is base64 like Ansible.
type slurpModule struct{}

func (slurpModule) Spec() Spec {
	return Spec{
		Doc: "Reads a file from the host; content is base64 like Ansible's (b64decode it).",
		Returns: map[string]string{
			"content":  "base64 of the file",
			"encoding": "base64",
			"source":   "the path",
		},
		Args: map[string]Arg{
			"src": {Type: String, Required: true, Aliases: []string{"path"}, Doc: "File on the host."},
		}}
}

func (m slurpModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("slurp", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	src := a.str("src")
	r, err := run(ctx, env, "base64 -w0 < "+shq(src), true)
	if err != nil {
		return nil, err
	}
	if r.RC != 0 {
		return &Result{Failed: true, Msg: "unable to slurp " + src + ": " + strings.TrimSpace(string(r.Stderr)), Data: map[string]any{"source": src}}, nil
	}
	content := strings.TrimSpace(string(r.Stdout))
	if _, err := base64.StdEncoding.DecodeString(content); err != nil {
		return nil, fmt.Errorf("slurp %s: bad base64 from host: %w", src, err)
	}
	return &Result{Data: map[string]any{"content": content, "encoding": "base64", "source": src}}, nil
}
