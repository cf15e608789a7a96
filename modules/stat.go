package modules

import (
	"context"
	"fmt"
	"strings"
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
		}}
}

func (m statModule) probe(a cargs) fileProbe {
	sum := a.boolean("get_checksum", true)
	algo := a.str("checksum_algorithm")
	return fileProbe{sha1: sum && algo != "sha256", sha256: sum && algo == "sha256", follow: a.boolean("follow", false)}
}

// ProbesOnlyPaths: the probe is the path's file probe.
func (statModule) ProbesOnlyPaths(map[string]any) bool { return true }

func (m statModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("stat", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return m.probe(a).script(a.str("path")), true
}

// Pipelinable: stat changes nothing; its result is its probe's answer,
// so a pipeline's foresight goes on past it with what it registers.
func (statModule) Pipelinable() {}

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
