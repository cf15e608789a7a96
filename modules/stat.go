package modules

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
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

// statModule registers stat.* like Ansible (checksum is sha1 like
// Ansible's default, so conditions written for it keep working).
type statModule struct{}

func (statModule) Spec() Spec {
	return Spec{
		Doc: "Reports a path's state in stat.* like Ansible (exists, mode, isdir, isreg, islnk, size, uid, gid, pw_name, gr_name, mtime, checksum). Read-only.",
		Returns: map[string]string{
			"stat": "mapping: exists, path, mode, isdir, isreg, islnk, size, uid, gid, pw_name, gr_name, mtime, readable, lnk_source, lnk_target, checksum",
		},
		Args: map[string]Arg{
			"path":               {Type: String, Required: true, Aliases: []string{"dest", "name"}, Doc: "Path on the host."},
			"get_checksum":       {Type: Bool, Doc: "Compute the checksum of a regular file.", Default: "yes"},
			"checksum_algorithm": {Type: String, Choices: []string{"sha1", "sha256"}, Aliases: []string{"checksum", "checksum_algo"}, Doc: "sha1 (Ansible's default, so conditions keep working) or sha256.", Default: "sha1"},
			"follow":             {Type: Bool, Doc: "Describe a symlink's target instead of the link.", Default: "no"},
			"get_mime":           {Type: Bool, Doc: "Accepted for Ansible playbooks; gokube does not report MIME types."},
			"get_attributes":     {Type: Bool, Doc: "Accepted for Ansible playbooks; gokube does not report file attributes."},
			"get_md5":            {Type: Bool, Doc: "Accepted for Ansible playbooks; gokube never computes MD5."},
		}}
}

func (m statModule) probe(a cargs) fileProbe {
	sum := a.boolean("get_checksum", true)
	algo := a.str("checksum_algorithm")
	return fileProbe{sha1: sum && algo != "sha256", sha256: sum && algo == "sha256"}
}

func (m statModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("stat", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return m.probe(a).script(a.str("path")), true
}

func (m statModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("stat", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	out, err := probeOrRun(ctx, env, m.probe(a).script(a.str("path")))
	if err != nil {
		return nil, err
	}
	kv := parseKV(out)
	readable := kv["readable"] != "0"
	if !readable {
		// Ansible reports what it can about a file it cannot read.
		delete(kv, "readable")
		var b strings.Builder
		for k, v := range kv {
			b.WriteString(k + "=" + v + "\n")
		}
		out = []byte(b.String())
	}
	st, err := parseFileState(out)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", a.str("path"), err)
	}
	s := map[string]any{"exists": st.Type != "absent"}
	if st.Type != "absent" {
		s["path"] = st.Path
		s["mode"] = modeString(st.Mode & 0o7777)
		s["isdir"] = st.Type == "directory"
		s["isreg"] = st.Type == "file"
		s["islnk"] = st.Type == "link"
		s["size"] = st.Size
		s["uid"], s["gid"] = st.UID, st.GID
		s["pw_name"], s["gr_name"] = st.Owner, st.Group
		s["mtime"] = st.Mtime
		s["readable"] = readable
		if st.Type == "link" {
			s["lnk_source"] = st.Target
			s["lnk_target"] = st.Target
		}
		if st.SHA1 != "" {
			s["checksum"] = st.SHA1
		}
		if st.SHA256 != "" {
			s["checksum"] = st.SHA256
		}
	}
	return &Result{Data: map[string]any{"stat": s}}, nil
}

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
			"src":               {Type: String, Required: true, Doc: "File on the host."},
			"dest":              {Type: String, Required: true, Doc: "Directory (or, with flat, file) on the control machine."},
			"flat":              {Type: Bool, Doc: "Write dest itself (or dest/BASENAME when dest ends in /) instead of dest/HOST/PATH.", Default: "no"},
			"fail_on_missing":   {Type: Bool, Doc: "Fail when src does not exist; no makes it ok.", Default: "yes"},
			"validate_checksum": {Type: Bool, Doc: "Accepted for Ansible playbooks; the content is compared byte for byte anyway."},
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
	if old, err := os.ReadFile(local); err == nil && string(old) == string(content) {
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	if env.Check {
		// The control machine's disk is not behind the dry connection.
		return &Result{Changed: true, Data: data}, nil
	}
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if err := atomicfile.Write(local, content, 0o644); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return &Result{Changed: true, Data: data}, nil
}
