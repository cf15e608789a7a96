package modules

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gokube/internal/atomicfile"
)

// fetchModule copies a file from the host to the control machine.
type fetchModule struct{}

func (fetchModule) Spec() Spec {
	return Spec{
		Doc: "Copies a file from the host to the control machine (dest/HOST/PATH, or dest itself with flat), atomically; unchanged when the local copy is identical.",
		Returns: map[string]string{
			"checksum": "sha1 of the content",
			"dest":     "the local path",
			"file":     "the host's path",
		},
		Args: map[string]Arg{
			"src":             {Type: String, Required: true, Doc: "File on the host."},
			"dest":            {Type: String, Required: true, Doc: "Directory (or, with flat, file) on the control machine."},
			"flat":            {Type: Bool, Doc: "Write dest itself (or dest/BASENAME when dest ends in /) instead of dest/HOST/PATH.", Default: "no"},
			"fail_on_missing": {Type: Bool, Doc: "Fail when src does not exist; no makes it ok.", Default: "yes"},
			"mode":            {Type: Any, Kind: Mode, Doc: "Permissions of the local file: octal or symbolic (applied to 0600). Fetched files are often credentials (a kubeconfig), so the default is 0600 and directories made for them are 0700.", Default: "0600"},
		}}
}

func (m fetchModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("fetch", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	src, dest := a.str("src"), a.str("dest")
	// Ansible's layout: dest/<host>/<src path>, or dest itself with flat
	// (dest/basename(src) when dest ends in /).
	local := filepath.Join(dest, env.Host, filepath.FromSlash(src))
	if a.boolean("flat", false) {
		local = dest
		if strings.HasSuffix(dest, "/") {
			local = filepath.Join(dest, path.Base(src))
		}
	}
	perm, err := fetchMode(a)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"dest": local, "file": src}
	content, err := env.Conn.Get(ctx, src, env.Become)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err // unreachable, cancelled, unreadable: not "missing"
		}
		if !a.boolean("fail_on_missing", true) {
			return &Result{Msg: "the remote file does not exist, not transferring, ignored", Data: data}, nil
		}
		return &Result{Failed: true, Msg: fmt.Sprintf("fetch %s: %v", src, err), Data: data}, nil
	}
	sum := sha1.Sum(content)
	data["checksum"] = hex.EncodeToString(sum[:])
	data["mode"] = modeString(uint32(perm))
	if old, err := os.ReadFile(local); err == nil && string(old) == string(content) {
		st, err := os.Stat(local)
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if st.Mode().Perm() == perm {
			return &Result{Msg: "unchanged", Data: data}, nil
		}
		if env.Check {
			return &Result{Changed: true, Data: data}, nil
		}
		if err := os.Chmod(local, perm); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		return &Result{Changed: true, Msg: "mode changed", Data: data}, nil
	}
	if env.Check {
		// The control machine's disk is not behind the dry connection.
		return &Result{Changed: true, Data: data}, nil
	}
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if err := atomicfile.Write(local, content, perm); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	// The file may have existed with other permissions.
	if err := os.Chmod(local, perm); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return &Result{Changed: true, Data: data}, nil
}

// fetchMode is the local file's permissions: mode, or 0600.
func fetchMode(a cargs) (os.FileMode, error) {
	if s, ok := a.m["mode"].(string); ok && s != "" && (s[0] < '0' || s[0] > '9') {
		m, err := applySymbolic(0o600, false, s)
		if err != nil {
			return 0, a.err("mode", "%v", err)
		}
		return os.FileMode(m) & os.ModePerm, nil
	}
	m, ok, err := parseMode(a, "mode")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0o600, nil
	}
	return os.FileMode(m) & os.ModePerm, nil
}
