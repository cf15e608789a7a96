package modules

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"

	"gokube/connection"
)

// unarchive extracts a tar archive (plain, gzip, bzip2; xz through the
// control machine's xz, sent decompressed to hosts without xz) into an
// existing directory. For an archive on the control machine
// the members' sha256 are computed locally and compared with the files on
// the host in one request, so an already extracted archive is neither
// uploaded nor extracted again; remote_src archives are compared by
// `tar --diff` on the host.
type unarchive struct{}

func (unarchive) Spec() Spec {
	return Spec{
		Doc: "Extracts a tar archive (plain, gzip, bzip2, xz) into an existing directory. For an archive on the control machine the members' sha256 are compared with the files on the host in one request, so an extracted archive is neither uploaded nor extracted again.",
		Returns: map[string]string{
			"dest":  "the directory",
			"files": "number of archive members (archives on the control machine)",
			"src":   "the archive",
		},
		Args: map[string]Arg{
			"src":        {Type: String, Required: true, Doc: "Archive on the control machine (searched like copy's src), or on the host with remote_src."},
			"dest":       {Type: String, Required: true, Doc: "Existing directory on the host to extract into."},
			"remote_src": {Type: Bool, Doc: "src is a file on the host.", Default: "no"},
			"creates":    {Type: String, Doc: "Skip when this path exists on the host."},
			"extra_opts": {Type: List, Doc: "Extra tar options; only --strip-components=N is understood."},
			"checksum":   {Type: String, Kind: Checksum, Doc: "Expected sha256:<hex> of the archive."},
			"owner":      {Type: String, Doc: "User that should own the file (name or uid); unset leaves it."},
			"group":      {Type: String, Doc: "Group that should own the file (name or gid); unset leaves it."},
			"mode":       {Type: Any, Kind: Mode, Doc: "Permissions: octal (0644, \"0644\") or symbolic (u=rw,g=r,o=); unset leaves new files at the umask and existing ones alone."},
		}}
}

// member is a regular file of an archive as it lands below dest.
type member struct {
	name, sha256 string
	mode         uint32
}

// stripComponents reads --strip-components from extra_opts, as tar does.
func stripComponents(opts []string) (int, error) {
	for i, o := range opts {
		v, ok := strings.CutPrefix(o, "--strip-components=")
		if !ok && o == "--strip-components" && i+1 < len(opts) {
			v, ok = opts[i+1], true
		}
		if ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("bad --strip-components %q", v)
			}
			return n, nil
		}
	}
	return 0, nil
}

// archiveMembers lists the regular files of a tar archive with their
// sha256. ok=false means the format cannot be read here (xz, zip).
// For xz archives plain is the decompressed tar, for hosts without xz.
func archiveMembers(ctx context.Context, data []byte, strip int) (members []member, ok bool, plain []byte, err error) {
	var r io.Reader = bytes.NewReader(data)
	switch {
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		// No xz in the standard library: the control machine's xz, when
		// there is one, decompresses for the comparison.
		if _, err := exec.LookPath("xz"); err != nil {
			return nil, false, nil, nil
		}
		cmd := exec.CommandContext(ctx, "xz", "-dc")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			return nil, false, nil, fmt.Errorf("xz -dc: %w", err)
		}
		r, plain = bytes.NewReader(out), out
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, false, nil, err
		}
		r = gz
	case bytes.HasPrefix(data, []byte("BZh")):
		r = bzip2.NewReader(r)
	case len(data) > 262 && string(data[257:262]) == "ustar":
	default:
		return nil, false, nil, nil
	}
	tr := tar.NewReader(bufio.NewReader(r))
	var out []member
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false, nil, fmt.Errorf("read archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(path.Clean(h.Name), "/"), "/")
		if len(parts) <= strip {
			continue
		}
		name := path.Join(parts[strip:]...)
		if name == ".." || strings.HasPrefix(name, "../") {
			return nil, false, nil, fmt.Errorf("archive member %q escapes dest", h.Name)
		}
		hs := sha256.New()
		if _, err := io.Copy(hs, tr); err != nil {
			return nil, false, nil, fmt.Errorf("read archive member %s: %w", h.Name, err)
		}
		out = append(out, member{name, hex.EncodeToString(hs.Sum(nil)), uint32(h.Mode) & 0o7777})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, true, plain, nil
}

// Run is long because it writes one probe (dest, creates, the checksum,
// every member's hash and mode) and reads the answer back: the script and
// its parse stay side by side so they cannot drift apart.
func (m unarchive) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("unarchive", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	sum, err := parseChecksum(a)
	if err != nil {
		return nil, err
	}
	w, err := parseAttrs(a, false)
	if err != nil {
		return nil, err
	}
	opts := a.list("extra_opts")
	strip, err := stripComponents(opts)
	if err != nil {
		return nil, a.err("extra_opts", "%v", err)
	}
	src, dest := a.str("src"), a.str("dest")
	data := map[string]any{"src": src, "dest": dest}
	qopts := make([]string, len(opts))
	for i, o := range opts {
		qopts[i] = shq(o)
	}
	tarOpts := strings.Join(qopts, " ")
	if w.Owner != "" || w.Group != "" {
		tarOpts += " --no-same-owner"
	}

	var probe strings.Builder
	fmt.Fprintf(&probe, "(if [ -d %s ]; then echo dest=dir; fi\n", shq(dest))
	if c := a.str("creates"); c != "" {
		fmt.Fprintf(&probe, "if [ -e %s ]; then echo creates=1; fi\n", shq(c))
	}
	var archive []byte
	var members []member
	var plainTar []byte
	canList := false
	remote := a.boolean("remote_src", false)
	if remote {
		if sum.hex != "" {
			fmt.Fprintf(&probe, "h=$(%ssum < %s) && echo \"sum=${h%%%% *}\"\n", sum.algo, shq(src))
		}
		fmt.Fprintf(&probe, "if tar -d -f %s -C %s %s >/dev/null 2>&1; then echo same=1; fi\n", shq(src), shq(dest), tarOpts)
	} else {
		p := strings.TrimPrefix(src, "file://")
		if archive, _, _, err = readSrc(env, p); err != nil {
			return nil, &ArgError{Module: "unarchive", Key: "src", Msg: err.Error()}
		}
		if sum.hex != "" {
			h := sum.newHash()
			h.Write(archive)
			if got := hex.EncodeToString(h.Sum(nil)); got != sum.hex {
				return &Result{Failed: true, Msg: fmt.Sprintf("%s: %s checksum %s, want %s", src, sum.algo, got, sum.hex), Data: data}, nil
			}
		}
		if members, canList, plainTar, err = archiveMembers(ctx, archive, strip); err != nil {
			return nil, fmt.Errorf("unarchive %s: %w", src, err)
		}
		if plainTar != nil {
			probe.WriteString("if command -v xz >/dev/null; then echo hostxz=1; fi\n")
		}
		if canList && len(members) > 0 {
			fmt.Fprintf(&probe, "cd %s 2>/dev/null && for f in", shq(dest))
			for _, mb := range members {
				probe.WriteString(" " + shq(mb.name))
			}
			probe.WriteString("; do if [ -f \"$f\" ]; then h=$(sha256sum < \"$f\"); printf 'm=%s %s %s\\n' \"${h%% *}\" \"$(stat -c %a -- \"$f\")\" \"$f\"; fi; done\n")
		}
	}
	probe.WriteString(")\n")
	out, err := probeOrRun(ctx, env, probe.String())
	if err != nil {
		return nil, err
	}
	kv := parseKV(out)
	if kv["creates"] == "1" {
		return &Result{Msg: "skipped, since " + a.str("creates") + " exists", Data: data}, nil
	}
	if kv["dest"] != "dir" {
		if env.Check {
			// An earlier task of this check run may "create" dest.
			return &Result{Changed: true, Msg: "dest " + dest + " does not exist (yet)", Data: data}, nil
		}
		return &Result{Failed: true, Msg: "dest " + dest + " must be an existing directory", Data: data}, nil
	}
	if remote && sum.hex != "" && kv["sum"] != sum.hex {
		return &Result{Failed: true, Msg: fmt.Sprintf("%s: %s checksum %q, want %s", src, sum.algo, kv["sum"], sum.hex), Data: data}, nil
	}
	same := kv["same"] == "1"
	if canList {
		same = membersSame(out, members, w, env)
		data["files"] = len(members)
	}
	if same {
		return &Result{Msg: "already extracted", Data: data}, nil
	}
	archivePath, err := uploadArchive(ctx, env, a, archive, plainTar, kv["hostxz"] == "1")
	if err != nil {
		return nil, err
	}
	if _, err := mustRun(ctx, env, extractScript(a, archivePath, members, canList, w, tarOpts), false); err != nil {
		return resultFail(err, data)
	}
	return &Result{Changed: true, Data: data}, nil
}

// membersSame reports whether every member of the archive is already on
// the host with the same content (the probe's "m=" lines) and, when
// extracting as root, the same mode.
func membersSame(out []byte, members []member, w attrs, env *Env) bool {
	have := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "m="); ok {
			if sha, rest, ok := strings.Cut(rest, " "); ok {
				if mode, name, ok := strings.Cut(rest, " "); ok {
					have[name] = sha + " " + mode
				}
			}
		}
	}
	for _, mb := range members {
		// Modes count only when extracting as root, where tar keeps
		// the archive's permissions instead of applying the umask.
		mode := mb.mode
		if m, ok := w.want(mode, false); ok {
			mode = m
		}
		sha, gotMode, _ := strings.Cut(have[mb.name], " ")
		if sha != mb.sha256 || (env.Become && (env.BecomeUser == "" || env.BecomeUser == "root") && gotMode != strconv.FormatUint(uint64(mode), 8)) {
			return false
		}
	}
	return true
}

// uploadArchive puts a local archive beside dest on the host (the tar
// decompressed here when the host has no xz) and returns its path; a
// remote_src archive is used where it is.
func uploadArchive(ctx context.Context, env *Env, a cargs, archive, plainTar []byte, hostXZ bool) (string, error) {
	if a.boolean("remote_src", false) {
		return a.str("src"), nil
	}
	if plainTar != nil && !hostXZ {
		// The host's tar cannot run xz: send the tar decompressed here.
		archive = plainTar
	}
	archivePath := path.Join(a.str("dest"), ".gokube-"+randHex()+".archive")
	if err := env.Conn.Put(ctx, connection.Upload{
		Path: archivePath, Content: bytes.NewReader(archive), Size: int64(len(archive)), Mode: 0o600,
		Become: env.Become, BecomeUser: env.BecomeUser,
	}); err != nil {
		return "", fmt.Errorf("upload %s: %w", archivePath, err)
	}
	return archivePath, nil
}

// extractScript extracts archivePath into dest (removing an uploaded
// archive after); owner, group and mode then apply to the members.
func extractScript(a cargs, archivePath string, members []member, canList bool, w attrs, tarOpts string) string {
	dest := a.str("dest")
	var script strings.Builder
	if !a.boolean("remote_src", false) {
		fmt.Fprintf(&script, "trap 'rm -f %s' EXIT\n", shq(archivePath))
	}
	fmt.Fprintf(&script, "tar -x -f %s -C %s %s", shq(archivePath), shq(dest), tarOpts)
	if canList && (w.Owner != "" || w.Group != "" || w.modeSet()) {
		// Owner, group and mode apply to the extracted files, as in Ansible.
		for _, mb := range members {
			script.WriteString(" && " + w.apply(shq(path.Join(dest, mb.name))))
		}
	}
	script.WriteString("\n")
	return script.String()
}
