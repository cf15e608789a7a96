package modules

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"gokube/connection"
)

// checksum is an expected digest, "sha256:<hex>" (or sha1).
type checksum struct{ algo, hex string }

func parseChecksum(a cargs) (checksum, error) {
	s := strings.TrimSpace(a.str("checksum"))
	if s == "" {
		return checksum{}, nil
	}
	algo, sum, ok := strings.Cut(s, ":")
	algo = strings.ToLower(algo)
	if !ok || (algo != "sha256" && algo != "sha1") {
		return checksum{}, a.err("checksum", "want sha256:<hex> (or sha1:<hex>), got %q", s)
	}
	if strings.HasPrefix(sum, "file://") {
		// As Ansible's checksum: sha256:<URL of a SHA256SUMS file>, for a
		// file on the control machine (an artifact cache's list).
		var err error
		if sum, err = checksumFromList(strings.TrimPrefix(sum, "file://"), a.str("url")); err != nil {
			return checksum{}, a.err("checksum", "%v", err)
		}
	}
	sum = strings.ToLower(strings.TrimSpace(sum))
	want := 64
	if algo == "sha1" {
		want = 40
	}
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != want {
		return checksum{}, a.err("checksum", "%s digest must be %d hex digits, got %q", algo, want, sum)
	}
	return checksum{algo, sum}, nil
}

// checksumFromList finds the digest of rawURL's file in a checksum list
// ("<hex>  <path>" lines, as sha256sum writes): the entry whose path is the
// URL's file name, or a trailing part of the URL's path.
func checksumFromList(listPath, rawURL string) (string, error) {
	if !path.IsAbs(listPath) {
		return "", fmt.Errorf("checksum list file://%s: want an absolute path", listPath)
	}
	b, err := os.ReadFile(listPath)
	if err != nil {
		return "", fmt.Errorf("checksum list: %w", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("checksum list: url %q: %w", rawURL, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		name := strings.TrimPrefix(f[1], "*")
		if name == path.Base(u.Path) || strings.HasSuffix(u.Path, "/"+strings.TrimPrefix(name, "./")) {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("%s lists no checksum for %s", listPath, u.Path)
}

func (c checksum) newHash() hash.Hash {
	if c.algo == "sha1" {
		return sha1.New()
	}
	return sha256.New()
}

// matches compares with what a file probe saw.
func (c checksum) matches(st *fileState) bool {
	if c.algo == "sha1" {
		return st.SHA1 == c.hex
	}
	return st.SHA256 == c.hex
}

// getURL downloads a file to the host: http(s) is fetched by the host with
// curl; file:// names a file on the control machine (the artifact cache,
// for hosts without internet) that is uploaded. Either way nothing is
// transferred when dest already has the checksum.
type getURL struct{}

func (getURL) Spec() Spec {
	return Spec{
		Doc: "Downloads a file to the host: http(s) with curl on the host; file:// is a file on the control machine (the artifact cache, for hosts without internet) that is uploaded. Nothing is transferred when dest already has the checksum.",
		Returns: map[string]string{
			"backup_file":   "the backup's path (with backup)",
			"checksum_dest": "digest of dest before the task",
			"dest":          "the file's path",
			"sha256":        "sha256 of what was placed",
			"state":         "file",
			"url":           "the URL",
		},
		Args: map[string]Arg{
			"url":            {Type: String, Required: true, Kind: URLOrFile, Doc: "http://, https:// (fetched by the host) or file:// (a file on the control machine)."},
			"dest":           {Type: String, Required: true, Doc: "Path of the file on the host."},
			"checksum":       {Type: String, Kind: Checksum, Doc: "Expected digest, sha256:<hex> (or sha1:<hex>); the download fails on a mismatch and an existing dest with it is not downloaded again."},
			"mode":           {Type: Any, Kind: Mode, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
			"owner":          {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":          {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"force":          {Type: Bool, Doc: "Without checksum: download again even when dest exists.", Default: "no"},
			"timeout":        {Type: Int, Doc: "Seconds curl may take."},
			"validate_certs": {Type: Bool, Doc: "Verify the server's TLS certificate.", Default: "yes"},
			"backup":         {Type: Bool, Doc: "Keep the previous content beside the file (NAME.<timestamp>~) before changing it; registers backup_file.", Default: "no"},
		}}
}

func (getURL) parse(a cargs) (*url.URL, checksum, fileProbe, error) {
	u, err := url.Parse(a.str("url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return nil, checksum{}, fileProbe{}, a.err("url", "want an http://, https:// or file:// URL, got %q", a.str("url"))
	}
	if u.Scheme == "file" && !path.IsAbs(u.Path) {
		return nil, checksum{}, fileProbe{}, a.err("url", "file:// URL needs an absolute path, got %q", a.str("url"))
	}
	c, err := parseChecksum(a)
	if err != nil {
		return nil, c, fileProbe{}, err
	}
	return u, c, fileProbe{dirBase: path.Base(u.Path), sha256: c.algo != "sha1", sha1: c.algo == "sha1"}, nil
}

func (m getURL) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("get_url", m.Spec(), args)
	if err != nil {
		return "", false
	}
	_, _, p, err := m.parse(a)
	if err != nil {
		return "", false
	}
	return p.script(a.str("dest")), true
}

func (m getURL) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("get_url", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	u, sum, probe, err := m.parse(a)
	if err != nil {
		return nil, err
	}
	w, err := parseAttrs(a, false)
	if err != nil {
		return nil, err
	}
	out, err := probeOrRun(ctx, env, probe.script(a.str("dest")))
	if err != nil {
		return nil, err
	}
	st, err := parseFileState(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.str("dest"), err)
	}
	data := map[string]any{"url": a.str("url"), "dest": st.Path, "state": "file"}
	if st.Type == "directory" {
		return &Result{Failed: true, Msg: "dest " + st.Path + " is a directory", Data: data}, nil
	}
	if st.Type == "file" && ((sum.hex != "" && sum.matches(st)) || (sum.hex == "" && !a.boolean("force", false))) {
		data["checksum_dest"] = st.SHA256 + st.SHA1
		fix := w.fix(st)
		if fix == "" {
			return &Result{Msg: "file already exists", Data: data}, nil
		}
		if _, err := mustRun(ctx, env, fix, false); err != nil {
			return resultFail(err, data)
		}
		return &Result{Changed: true, Msg: "attributes changed", Data: data}, nil
	}
	if u.Scheme == "file" {
		return m.upload(ctx, env, u.Path, st, sum, w, data)
	}
	return m.curl(ctx, env, a, u, st, sum, w, data)
}

// upload sends a control-machine file, streaming it (artifacts are large).
func (getURL) upload(ctx context.Context, env *Env, local string, st *fileState, sum checksum, w attrs, data map[string]any) (*Result, error) {
	f, err := os.Open(local)
	if err != nil {
		return &Result{Failed: true, Msg: "artifact: " + err.Error(), Data: data}, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h256 := sha256.New()
	hw := io.Writer(h256)
	var hsum hash.Hash
	if sum.hex != "" && sum.algo != "sha256" {
		hsum = sum.newHash()
		hw = io.MultiWriter(h256, hsum)
	}
	if _, err := io.Copy(hw, f); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", local, err)
	}
	got256 := hex.EncodeToString(h256.Sum(nil))
	data["sha256"] = got256
	if sum.hex != "" {
		got := got256
		if hsum != nil {
			got = hex.EncodeToString(hsum.Sum(nil))
		}
		if got != sum.hex {
			return &Result{Failed: true, Msg: fmt.Sprintf("artifact %s: %s checksum %s, want %s", local, sum.algo, got, sum.hex), Data: data}, nil
		}
	}
	if st.Type == "file" && st.SHA256 == got256 {
		// force without checksum: same content, nothing to send.
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	mode, owner, group := uint32(0o644), w.Owner, w.Group
	if st.Type == "file" {
		mode = st.Mode
		if owner == "" {
			owner = st.Owner
		}
		if group == "" {
			group = st.Group
		}
	}
	if m, ok := w.want(mode, false); ok {
		mode = m
	}
	err = env.Conn.Put(ctx, connection.Upload{
		Path: st.Path, Content: f, Size: fi.Size(), Mode: mode, Owner: owner, Group: group,
		Become: env.Become, BecomeUser: env.BecomeUser,
	})
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", st.Path, err)
	}
	return &Result{Changed: true, Data: data}, nil
}

const getURLSame = "__gokube_same__"

// curl downloads on the host into a temp file beside dest, verifies it and
// renames it into place in one request.
func (getURL) curl(ctx context.Context, env *Env, a cargs, u *url.URL, st *fileState, sum checksum, w attrs, data map[string]any) (*Result, error) {
	var b strings.Builder
	d := shq(st.Path)
	fmt.Fprintf(&b, "d=%s\ntmp=$(mktemp \"$(dirname \"$d\")/.gokube-XXXXXX\") || exit 1\ntrap 'rm -f \"$tmp\"' EXIT\n", d)
	curl := "curl -fsSL --retry 3"
	if t := a.integer("timeout", 0); t > 0 {
		curl += " --max-time " + strconv.Itoa(t)
	}
	if !a.boolean("validate_certs", true) {
		curl += " -k"
	}
	fmt.Fprintf(&b, "%s -o \"$tmp\" -- %s || exit $?\n", curl, shq(u.String()))
	if sum.hex != "" {
		fmt.Fprintf(&b, "h=$(%ssum < \"$tmp\"); h=${h%%%% *}; if [ \"$h\" != %s ]; then echo \"checksum mismatch: %s $h, want %s\" >&2; exit 65; fi\n",
			sum.algo, sum.hex, sum.algo, sum.hex)
	}
	b.WriteString("n=$(sha256sum < \"$tmp\"); n=${n%% *}\n")
	if st.Type == "file" {
		fmt.Fprintf(&b, "o=$(sha256sum < \"$d\"); if [ \"${o%%%% *}\" = \"$n\" ]; then echo %s; exit 0; fi\n", getURLSame)
		b.WriteString("chmod --reference=\"$d\" \"$tmp\" && chown --reference=\"$d\" \"$tmp\" || exit 1\n")
	} else {
		b.WriteString("chmod 0644 \"$tmp\" || exit 1\n")
	}
	if fix := w.apply(`"$tmp"`); fix != "" {
		b.WriteString(fix + " || exit 1\n")
	}
	if a.boolean("backup", false) && st.Type == "file" {
		bs, name := backupScript(st.Path, time.Now())
		b.WriteString(bs + " || exit 1\n")
		data["backup_file"] = name
	}
	b.WriteString("mv -f -- \"$tmp\" \"$d\" && echo \"sha256=$n\"\n")
	r, err := mustRun(ctx, env, b.String(), false)
	if err != nil {
		res, err := resultFail(err, data)
		if res != nil {
			res.Msg = "download " + u.Redacted() + " failed: " + res.Msg
		}
		return res, err
	}
	if strings.Contains(string(r.Stdout), getURLSame) {
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	if s := parseKV(r.Stdout)["sha256"]; s != "" {
		data["sha256"] = s
	}
	return &Result{Changed: true, Data: data}, nil
}
