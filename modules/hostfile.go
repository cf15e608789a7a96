package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"gokube/connection"
)

// shq quotes s for /bin/sh.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run sends one request with the task's become settings and environment.
func run(ctx context.Context, env *Env, script string, readOnly bool) (connection.Result, error) {
	return env.Conn.Run(ctx, connection.Request{
		Script:     script,
		Become:     env.Become,
		BecomeUser: env.BecomeUser,
		Env:        env.Environment,
		ReadOnly:   readOnly,
	})
}

// mustRun is run for scripts whose non-zero exit is a failure of the task.
func mustRun(ctx context.Context, env *Env, script string, readOnly bool) (connection.Result, error) {
	res, err := run(ctx, env, script, readOnly)
	if err != nil {
		return res, err
	}
	if res.RC != 0 {
		return res, &connection.ExitError{Host: env.Conn.Host(), Cmd: script, RC: res.RC, Stderr: strings.TrimSpace(string(res.Stderr))}
	}
	return res, nil
}

// probeOrRun returns the executor's batched probe output when there is one
// and runs the probe script otherwise, so both paths parse the same text.
func probeOrRun(ctx context.Context, env *Env, script string) ([]byte, error) {
	if env.Probe != nil {
		return env.Probe, nil
	}
	res, err := mustRun(ctx, env, script, true)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return res.Stdout, nil
}

// fileProbe says what the probe of one path prints.
type fileProbe struct {
	// dirBase: when the path is a directory (or ends in /), look at
	// path/dirBase instead (copy's dest-is-a-directory rule).
	dirBase string
	sha256  bool
	sha1    bool
	content bool // base64 of the content, for modules that edit in Go
	// follow: a symlink that points somewhere is described by its target
	// (file: mode etc. apply to what the link points to, as in Ansible).
	follow bool
}

// script returns a read-only POSIX sh script that prints key=value lines
// about one path: path, type (absent/file/directory/link/other), mode,
// uid, gid, owner, group, size, mtime, target (links), sha256/sha1/content
// (regular files, on request), readable=0 when it cannot be read.
// It is a brace group, not a subshell (a fork less per probe); it sets
// only p, t and h, each before use, so probes concatenate safely.
func (o fileProbe) script(p string) string {
	var b strings.Builder
	// The declarations let ProbePrelude stat and hash every path of a
	// batch in one process each; gk_stat/gk_sha256 fall back to their own
	// process when run alone or when the path turned out different.
	decl := func(p string) {
		fmt.Fprintf(&b, "%s%s %s\n", probeDecl, base64.StdEncoding.EncodeToString([]byte(p)), o.sumFlag())
	}
	decl(p)
	if o.dirBase != "" {
		decl(strings.TrimSuffix(p, "/") + "/" + o.dirBase)
	}
	b.WriteString(probeFallbacks)
	b.WriteString("{ p=" + shq(p) + "\n")
	if o.dirBase != "" {
		fmt.Fprintf(&b, "case \"$p\" in */) p=\"$p\"%s;; *) if [ -d \"$p\" ] && [ ! -L \"$p\" ]; then p=\"$p\"/%s; fi;; esac\n", shq(o.dirBase), shq(o.dirBase))
	}
	if o.follow {
		b.WriteString("if [ -L \"$p\" ] && [ -e \"$p\" ]; then p=$(readlink -f -- \"$p\"); fi\n")
	}
	b.WriteString(`printf 'path=%s\n' "$p"
if [ -L "$p" ]; then t=link; elif [ -d "$p" ]; then t=directory; elif [ -f "$p" ]; then t=file; elif [ -e "$p" ]; then t=other; else t=absent; fi
echo "type=$t"
if [ "$t" != absent ]; then
gk_stat "$p"
if [ "$t" = link ]; then gk_target "$p"; fi
fi
if [ "$t" = file ]; then
if [ ! -r "$p" ]; then echo readable=0; else :
`)
	if o.sha256 {
		b.WriteString("gk_sha256 \"$p\"\n")
	}
	if o.sha1 {
		b.WriteString("gk_sha1 \"$p\"\n")
	}
	if o.content {
		b.WriteString("gk_content \"$p\"\n")
	}
	b.WriteString("fi\nfi\n}\n")
	return b.String()
}

// sumFlag is the checksum a declaration asks the prelude for: sha256
// (copy, template, get_url), sha1 (stat's default) or none. A probe
// asking for both declares sha256, and its sha1 is hashed on its own.
func (o fileProbe) sumFlag() string {
	switch {
	case o.sha256:
		return sumSHA256
	case o.sha1:
		return sumSHA1
	}
	return "0"
}

const (
	sumSHA256 = "1"
	sumSHA1   = "sha1"
)

// contentReadMax is the largest file whose content a probe batch reads
// with the shell's read (a byte per system call) rather than base64 (a
// process): a config file that lineinfile edits, not a binary.
const contentReadMax = 16 << 10

// statFormat is what a file probe prints about a path that exists.
const statFormat = `mode=%a\nuid=%u\ngid=%g\nowner=%U\ngroup=%G\nsize=%s\nmtime=%Y\nino=%d:%i\n`

// probeDecl starts the comment line by which a file probe declares a path
// (base64) and the checksum it wants (sumFlag).
const probeDecl = "# gokube-probe-path "

// probeFallbacks defines gk_stat and gk_sha256 unless a batch prelude did.
const probeFallbacks = `command -v gk_stat >/dev/null 2>&1 || gk_stat() { stat --printf='` + statFormat + `' -- "$1"; }
command -v gk_target >/dev/null 2>&1 || gk_target() { printf 'target=%s\n' "$(readlink -- "$1")"; }
command -v gk_content >/dev/null 2>&1 || gk_content() { printf 'content='; base64 -w0 < "$1"; echo; }
command -v gk_sha256 >/dev/null 2>&1 || gk_sha256() { h=$(sha256sum < "$1") && echo "sha256=${h%% *}"; }
command -v gk_sha1 >/dev/null 2>&1 || gk_sha1() { h=$(sha1sum < "$1") && echo "sha1=${h%% *}"; }
`

// ProbePaths returns the paths a probe script's file probes declared, in
// order, without repeats.
func ProbePaths(script string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range probeDecls(script) {
		if !seen[d.path] {
			seen[d.path] = true
			out = append(out, d.path)
		}
	}
	return out
}

// probeDeclared is one file probe's declaration in a batch: its path and
// the checksum it wants (sumFlag).
type probeDeclared struct {
	path string
	sum  string
}

// probeDecls returns the file probes a script declared, in order, repeats
// included; a declaration that does not decode is left out.
func probeDecls(script string) []probeDeclared {
	var out []probeDeclared
	for _, line := range strings.Split(script, "\n") {
		rest, ok := strings.CutPrefix(line, probeDecl)
		if !ok {
			continue
		}
		enc, flag, _ := strings.Cut(rest, " ")
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(raw) == 0 {
			continue
		}
		out = append(out, probeDeclared{path: string(raw), sum: flag})
	}
	return out
}

// ProbePrelude returns the script the executor puts before a batch of
// probes: one stat over every path the batch's file probes declared and
// one sha256sum over those that want a checksum, with gk_stat/gk_sha256
// reading their answers from memory. Starting a process costs 10-30 ms on a
// busy host, so a batch of 25 file probes drops from ~50 processes to 2.
// Package probes share one dpkg-query the same way (pkgPrelude), unit
// probes one systemctl show (unitPrelude).
// With hc.Dir set, checksums come from the host's hash cache when the file
// is provably unchanged (see hashCacheScript), so a warm run reads no file
// content at all. It returns "" when there is nothing to share.
func ProbePrelude(batch string, hc HashCache) string {
	return filePrelude(batch, hc) + pkgPrelude(batch) + unitPrelude(batch)
}

// HashCache says where the probe batch keeps the host's sha256 cache.
type HashCache struct {
	// Dir is the root-owned 0700 directory holding the cache file; ""
	// turns the cache off.
	Dir string
	// Write lets the batch record new checksums; false in check mode,
	// which changes nothing on the host, so the batch only reads.
	Write bool
}

// DefaultHashCacheDir is where hosts keep gokube's hash cache: a cache in
// the FHS sense, deleting it only costs one run its hashing.
const DefaultHashCacheDir = "/var/cache/gokube"

// sha1Entry names a path's sha1 in the hash cache, whose other entries
// are sha256 named by the path alone. The record separator cannot start a
// path the prelude looks up (such names are left to their own probe), so
// the two never meet, and an older gokube keeps the line as another path's.
func sha1Entry(p string) string { return "\x1esha1 " + p }

// hashCacheFile is the cache's name inside HashCache.Dir (named for its
// first algorithm; sha1 entries live in it too, see sha1Entry).
const hashCacheFile = "sha256"

// hashCacheMax bounds the entries kept for paths other than the batch's
// (the batch's own are always kept): past it the others are dropped, so
// the cache never grows with the history of a host.
const hashCacheMax = 1024

// statKey is what the prelude's stat prints before a path's statFormat
// lines: the raw mode (type and permissions) and owner, then the cache
// key: device:inode, size, mtime and ctime with nanoseconds.
const statKey = `%f %u %d:%i:%s:%.9Y:%.9Z`

func filePrelude(batch string, hc HashCache) string {
	var stats, sums, sums1 []string
	seen := map[string]bool{}
	decls := 0
	for _, d := range probeDecls(batch) {
		p := d.path
		decls++
		// Names with a newline or the separators cannot be looked up by
		// the prelude; their probes stat them themselves.
		if strings.ContainsAny(p, "\n\x1e\x1f\\") {
			continue
		}
		if !seen[p] {
			seen[p] = true
			stats = append(stats, p)
		}
		if d.sum == sumSHA256 && !seen["sha256:"+p] {
			seen["sha256:"+p] = true
			sums = append(sums, p)
		}
		if d.sum == sumSHA1 && !seen["sha1:"+p] {
			seen["sha1:"+p] = true
			sums1 = append(sums1, p)
		}
	}
	cache := hc.Dir != "" && len(sums)+len(sums1) > 0 && !strings.ContainsAny(hc.Dir, "\n\x1e\x1f\\")
	// One stat answers every declaration of a path (a stat task and a
	// file task on the same directory), and a checksum may come from the
	// cache: the prelude pays as soon as there are two declarations or the
	// cache may answer one.
	if len(stats) == 0 || decls < 2 && !cache {
		return ""
	}
	names := stats
	if cache {
		// /proc/self/ first: its times are the moment this stat started,
		// the host's "now" on the clock that stamps files (no date process).
		names = append([]string{"/proc/self/", hc.Dir, path.Join(hc.Dir, hashCacheFile)}, stats...)
	}
	// The directories above each clean absolute path join the same stat,
	// so that the scan below can tell every symbolic link on the way to a
	// probed path (ProbeLinks).
	var above []string
	for _, p := range stats {
		if !path.IsAbs(p) || path.Clean(p) != p {
			continue
		}
		for d := path.Dir(p); d != "/" && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			above = append(above, d)
		}
	}
	names = append(names, above...)
	// Every path gets a number: dash's ${v#*pattern} is quadratic in the
	// length of v, so records live in variables gk_s<n> and gk_h<n> found
	// through one case statement (gk_idx), never by searching one string.
	idx := map[string]int{}
	var b strings.Builder
	b.WriteString("gk_RS='\x1e'; gk_US='\x1f'; gk_NL='\n'\ngk_idx() { case $1 in\n")
	for i, p := range names {
		idx[p] = i
		fmt.Fprintf(&b, "%s) gk_i=%d;;\n", shq(p), i)
	}
	// A sha1 has its own entry in the hash cache, named by sha1Entry; the
	// name gets a number of its own (gk_c<n>), but it is not stat'ed.
	for i, p := range sums1 {
		n := len(names) + i
		idx[sha1Entry(p)] = n
		fmt.Fprintf(&b, "%s) gk_i=%d;;\n", shq(sha1Entry(p)), n)
	}
	b.WriteString("*) gk_i=;; esac; }\n")
	quoted := make([]string, len(names))
	for i, p := range names {
		quoted[i] = shq(p)
	}
	// %N last, between unit separators: with QUOTING_STYLE=literal it is
	// "name -> target" for a link, which gk_target answers from (no
	// readlink per link), and the name alone otherwise.
	fmt.Fprintf(&b, "gk_t=$(QUOTING_STYLE=literal stat --printf=\"$gk_RS%%n$gk_US\"'%s'\"$gk_US\"'%s'\"$gk_US%%N$gk_US\" -- %s 2>/dev/null)\n", statKey, statFormat, strings.Join(quoted, " "))
	b.WriteString(`while :; do case $gk_t in *"$gk_RS"*) ;; *) break;; esac
gk_t=${gk_t#*"$gk_RS"}; gk_r=${gk_t%%"$gk_RS"*}; gk_idx "${gk_r%%"$gk_US"*}"
if [ -n "$gk_i" ]; then eval "gk_s$gk_i=\${gk_r#*\"\$gk_US\"}"; fi
case ${gk_r#*"$gk_US"} in a*) printf '` + probeLinkLine + ` %s\n' "${gk_r%%"$gk_US"*}";; esac
done
`)
	// A directory above a path that stat could not see (absent, or not
	// searchable) counts as a link: unknown.
	for _, d := range above {
		fmt.Fprintf(&b, "[ -n \"${gk_s%d-}\" ] || printf '%s %%s\\n' %s\n", idx[d], probeLinkLine, shq(d))
	}
	b.WriteString("echo " + probeLinksScanned + `
gk_rec() { gk_idx "$1"; gk_r=; if [ -n "$gk_i" ]; then eval "gk_r=\${gk_s$gk_i-}"; fi; [ -n "$gk_r" ]; }
gk_stat() { if gk_rec "$1"; then gk_r=${gk_r#*"$gk_US"}; gk_r=${gk_r%"$gk_US"*"$gk_US"}; printf '%s\n' "${gk_r%"$gk_NL"}"; else stat --printf='` + statFormat + `' -- "$1"; fi; }
gk_content() {
gk_z=; if gk_rec "$1"; then gk_z=${gk_r#*"$gk_US"}; gk_z=${gk_z#*size=}; gk_z=${gk_z%%"$gk_NL"*}; fi
case $gk_z in ''|*[!0-9]*) gk_z=;; esac
if [ -n "$gk_z" ] && [ "$gk_z" -le ` + strconv.Itoa(contentReadMax) + ` ]; then
gk_n=0; gk_cl=
while IFS= read -r gk_cl; do printf 'content-line=%s\n' "$gk_cl"; gk_n=$((gk_n+${#gk_cl}+1)); gk_cl=; done <"$1"
gk_n=$((gk_n+${#gk_cl}))
if [ "$gk_n" -eq "$gk_z" ]; then printf 'content-tail=%s\n' "$gk_cl"; return; fi
fi
printf 'content='; base64 -w0 < "$1"; echo
}
gk_target() { if gk_rec "$1"; then gk_r=${gk_r%"$gk_US"}; gk_r=${gk_r##*"$gk_US"}; case $gk_r in "$1 -> "*) printf 'target=%s\n' "${gk_r#"$1 -> "}"; return;; esac; fi; printf 'target=%s\n' "$(readlink -- "$1")"; }
`)
	if len(sums)+len(sums1) == 0 {
		return b.String()
	}
	if cache {
		b.WriteString(hashCacheRead(hc))
	}
	// gk_hit <n> <c> '<quoted path>' <entry> <h|g>: the checksum of path
	// number n (h: sha256 into gk_h<n>, g: sha1 into gk_g<n>) from the
	// cache's entry number c, or the path joins gk_m (gk_m1), the
	// arguments of the one sha256sum (sha1sum). Only regular files (raw
	// mode 0x8...): a path that is absent or a directory (copy's dest/base
	// alternative) is not hashed, and a warm run whose files are all in
	// the cache starts no hashing process.
	b.WriteString(`gk_m=; gk_m1=; gk_N=
gk_hit() {
eval "gk_r=\${gk_s$1-}"; case $gk_r in 8*) ;; *) return;; esac
gk_k=; gk_h=; if [ -n "$gk_C" ]; then gk_k=${gk_r%%"$gk_US"*}; gk_k=${gk_k##* }; eval "gk_t=\${gk_c$2-}"; if [ "${gk_t%"$gk_US"*}" = "$gk_k" ]; then gk_h=${gk_t##*"$gk_US"}; fi; fi
case $gk_h in *[!0-9a-f]*) gk_h=;; esac
case $5$gk_h in h` + strings.Repeat("?", 64) + `|g` + strings.Repeat("?", 40) + `) ;; *) gk_h=;; esac
if [ -n "$gk_h" ]; then eval "gk_$5$1=\$gk_h"; gk_N=$gk_N"$4$gk_US$gk_k$gk_US$gk_h$gk_NL"; return; fi
if [ "$5" = h ]; then gk_m="$gk_m $3"; else gk_m1="$gk_m1 $3"; fi
}
`)
	b.WriteString("gk_C=${gk_C-}\n")
	for _, p := range sums {
		fmt.Fprintf(&b, "gk_hit %d %d %s %s h\n", idx[p], idx[p], shq(shq(p)), shq(p))
	}
	for _, p := range sums1 {
		fmt.Fprintf(&b, "gk_hit %d %d %s %s g\n", idx[p], idx[sha1Entry(p)], shq(shq(p)), shq(sha1Entry(p)))
	}
	for _, h := range []struct{ list, tool, v string }{{"gk_m", "sha256sum", "h"}, {"gk_m1", "sha1sum", "g"}} {
		fmt.Fprintf(&b, `if [ -n "$%[1]s" ]; then
while IFS= read -r gk_l; do gk_idx "${gk_l#*"  "}"; if [ -n "$gk_i" ]; then eval "gk_%[3]s$gk_i=\${gk_l%%%%\" \"*}"; fi; done <<GK_SUMS_EOF
$(eval "%[2]s --$%[1]s" 2>/dev/null)
GK_SUMS_EOF
fi
`, h.list, h.tool, h.v)
	}
	b.WriteString(`gk_sha256() { gk_idx "$1"; gk_r=; if [ -n "$gk_i" ]; then eval "gk_r=\${gk_h$gk_i-}"; fi; if [ -n "$gk_r" ]; then echo "sha256=$gk_r"; else h=$(sha256sum < "$1") && echo "sha256=${h%% *}"; fi; }
gk_sha1() { gk_idx "$1"; gk_r=; if [ -n "$gk_i" ]; then eval "gk_r=\${gk_g$gk_i-}"; fi; if [ -n "$gk_r" ]; then echo "sha1=$gk_r"; else h=$(sha1sum < "$1") && echo "sha1=${h%% *}"; fi; }
`)
	if cache {
		b.WriteString(hashCacheRecord(sums, sums1, idx, hc))
	}
	return b.String()
}

// hashCacheRead loads the host's hash cache, when it can be trusted, into
// gk_c<n> ("<key><US><sha256>") for the batch's paths and gk_o (the other
// paths' lines, kept when the cache is rewritten).
//
// Why a cache on the host and not, say, comparing size and mtime as rsync
// does: a warm run must still notice any change to a file's content, and
// mtime can be set back (touch -d, cp -p, tar). The key is device:inode,
// size, mtime and ctime with nanoseconds: every write, rename over, chmod
// or chown sets ctime to the current time, and nothing but the clock can
// set it, so a file whose key matches has not been written since it was
// hashed. An entry is recorded only for a file whose ctime is at least two
// seconds older than the stat that read the key (the time of /proc/self/
// in the same stat call): a write after that stat sets a later ctime, so a
// (key, checksum) pair can never describe content that followed it, even
// with coarse file timestamps (the "racy git" problem).
//
// Trust: the cache is used only when the directory is root's with mode
// 0700 and the file root's with mode 0600 (so reading it needs root too),
// so no other user can plant a checksum. It is written atomically (a temp
// file in the same directory, then mv); a torn or garbled line fails the
// checks of gk_hit and is a miss. Any doubt is a miss, and a miss costs
// only the hashing, as without the cache.
func hashCacheRead(hc HashCache) string {
	return fmt.Sprintf(`gk_cd=%s; gk_cf=%s
gk_own() { gk_rec "$1" && case $gk_r in "$2 0 "*) return 0;; esac; return 1; }
gk_now=; if gk_rec /proc/self/; then gk_now=${gk_r%%%%"$gk_US"*}; gk_now=${gk_now##*:}; gk_now=${gk_now%%.*}; fi
gk_C=; gk_ok=; gk_o=; gk_n=0; gk_dirty=
if gk_own "$gk_cd" 41c0; then
gk_ok=1; gk_C=1
if gk_own "$gk_cf" 8180; then
while IFS= read -r gk_l; do gk_idx "${gk_l%%%%"$gk_US"*}"
if [ -n "$gk_i" ]; then eval "gk_c$gk_i=\${gk_l#*\"\$gk_US\"}"; else gk_o=$gk_o$gk_l$gk_NL; gk_n=$((gk_n + 1)); fi
done <"$gk_cf"
elif gk_rec "$gk_cf"; then gk_dirty=1; fi
elif [ ! -e "$gk_cd" ]; then gk_C=1; fi
`, shq(hc.Dir), shq(path.Join(hc.Dir, hashCacheFile)))
}

// hashCacheRecord adds the checksums just computed to the cache and
// rewrites it when anything changed (never in check mode).
func hashCacheRecord(sums, sums1 []string, idx map[string]int, hc HashCache) string {
	var b strings.Builder
	// gk_new <n> <c> <h|g> <entry>: as gk_hit.
	b.WriteString(`gk_new() {
eval "gk_h=\${gk_$3$1-}"; eval "gk_t=\${gk_c$2-}"; eval "gk_r=\${gk_s$1-}"
if [ -n "$gk_t" ]; then gk_dirty=1; fi
if [ -z "$gk_h" ] || [ -z "$gk_r" ] || [ -z "$gk_now" ]; then return; fi
gk_k=${gk_r%%"$gk_US"*}; gk_k=${gk_k##* }; gk_c=${gk_k##*:}; gk_c=${gk_c%.*}
case $gk_c in ''|*[!0-9]*) return;; esac
if [ $((gk_c + 2)) -gt "$gk_now" ]; then return; fi
gk_N=$gk_N"$4$gk_US$gk_k$gk_US$gk_h$gk_NL"; gk_dirty=1
}
`)
	for _, p := range sums {
		fmt.Fprintf(&b, "case \"$gk_m \" in *%s*) gk_new %d %d h %s;; esac\n", shq(" "+shq(p)+" "), idx[p], idx[p], shq(p))
	}
	for _, p := range sums1 {
		fmt.Fprintf(&b, "case \"$gk_m1 \" in *%s*) gk_new %d %d g %s;; esac\n", shq(" "+shq(p)+" "), idx[p], idx[sha1Entry(p)], shq(sha1Entry(p)))
	}
	if !hc.Write {
		return b.String()
	}
	// Written only into a directory that passed the checks, or a new one
	// made with mode 0700 (by root: /var/cache is root's).
	fmt.Fprintf(&b, `if [ -n "$gk_dirty" ] && [ -n "$gk_C" ] && { { [ -n "$gk_ok" ] && [ -w "$gk_cd" ]; } || { [ ! -e "$gk_cd" ] && [ -w %s ]; }; }; then
if [ "$gk_n" -gt %d ]; then gk_o=; fi
(umask 077; if [ ! -d "$gk_cd" ]; then mkdir -m 700 -- "$gk_cd" || exit; fi; printf '%%s' "$gk_o$gk_N" >"$gk_cf.$$" && mv -f -- "$gk_cf.$$" "$gk_cf" || rm -f -- "$gk_cf.$$") 2>/dev/null
fi
`, shq(path.Dir(hc.Dir)), hashCacheMax)
	return b.String()
}

// The prelude prints, before the batch's first probe, one probeLinkLine per
// stat'ed name that is a symbolic link (raw mode 0xa...), then
// probeLinksScanned.
const (
	probeLinkLine     = "gokube-link"
	probeLinksScanned = "gokube-links-scanned"
)

// ProbeLinks reads the prelude's link scan from the text a batch printed
// before its first probe: the names that are symbolic links, and whether
// the scan ran at all (without it nothing is known).
func ProbeLinks(head []byte) (links map[string]bool, scanned bool) {
	links = map[string]bool{}
	for _, line := range strings.Split(string(head), "\n") {
		if name, ok := strings.CutPrefix(line, probeLinkLine+" "); ok {
			links[name] = true
		} else if line == probeLinksScanned {
			scanned = true
		}
	}
	return links, scanned
}

// PathsUnlinked says whether every path is absolute and clean and neither
// it nor a directory above it is a symbolic link according to links (a
// scan that stat'ed them all): then the path is where its name says, and
// two such paths are related only when one is a prefix of the other.
func PathsUnlinked(paths []string, links map[string]bool) bool {
	for _, p := range paths {
		if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\n\x1e\x1f\\") {
			return false
		}
		for d := p; d != "/"; d = path.Dir(d) {
			if links[d] {
				return false
			}
		}
	}
	return true
}

// fileState is a parsed file probe.
type fileState struct {
	Path    string
	Type    string // absent file directory link other
	Mode    uint32
	UID     int
	GID     int
	Owner   string
	Group   string
	Size    int64
	Mtime   int64
	Target  string
	Ino     string // device:inode, for hard links
	SHA256  string
	SHA1    string
	Content []byte
	HasData bool // content was probed
}

func parseFileState(out []byte) (*fileState, error) {
	kv := parseKV(out)
	st := &fileState{Path: kv["path"], Type: kv["type"]}
	if st.Type == "" {
		return nil, fmt.Errorf("probe output has no type line: %q", truncate(string(out), 200))
	}
	if kv["readable"] == "0" {
		return nil, fmt.Errorf("%s: not readable (become needed?)", st.Path)
	}
	if st.Type == "absent" {
		return st, nil
	}
	m, err := strconv.ParseUint(kv["mode"], 8, 32)
	if err != nil {
		return nil, fmt.Errorf("probe: bad mode %q: %w", kv["mode"], err)
	}
	st.Mode = uint32(m)
	st.UID, _ = strconv.Atoi(kv["uid"])
	st.GID, _ = strconv.Atoi(kv["gid"])
	st.Owner, st.Group = kv["owner"], kv["group"]
	st.Size, _ = strconv.ParseInt(kv["size"], 10, 64)
	st.Mtime, _ = strconv.ParseInt(kv["mtime"], 10, 64)
	st.Target, st.Ino = kv["target"], kv["ino"]
	st.SHA256, st.SHA1 = kv["sha256"], kv["sha1"]
	if c, ok := kv["content"]; ok {
		data, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("probe: bad content encoding: %w", err)
		}
		st.Content, st.HasData = data, true
	} else if data, ok := contentLines(out); ok {
		if int64(len(data)) != st.Size {
			return nil, fmt.Errorf("%s: probe read %d bytes of content, stat said %d", st.Path, len(data), st.Size)
		}
		st.Content, st.HasData = data, true
	}
	return st, nil
}

// contentLines is the content a batch's gk_content printed line by line:
// every content-line with its newline, then content-tail (the last line
// when it has no newline, else empty). ok is false without a tail.
func contentLines(out []byte) (data []byte, ok bool) {
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if rest, found := bytes.CutPrefix(line, []byte("content-line=")); found {
			data = append(data, rest...)
			continue
		}
		if rest, found := bytes.CutPrefix(line, []byte("content-tail=")); found {
			return append(data, bytes.TrimSuffix(rest, []byte("\n"))...), true
		}
	}
	return nil, false
}

// parseKV reads key=value lines; the first = splits.
func parseKV(out []byte) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, seen := kv[k]; !seen {
				kv[k] = v
			}
		}
	}
	return kv
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// attrs are the wanted owner, group and mode; empty/unset leave a file's
// current value alone.
type attrs struct {
	Owner   string
	Group   string
	Mode    uint32
	HasMode bool
	// Sym is a symbolic mode ("u=rw,g=r,o="), applied to the current mode.
	Sym string
	// Preserve (copy, template): the mode of the source file.
	Preserve bool
}

// parseAttrs reads owner, group and mode (octal, symbolic, or "preserve"
// where preserveOK).
func parseAttrs(a cargs, preserveOK bool) (attrs, error) {
	w := attrs{Owner: a.str("owner"), Group: a.str("group")}
	if s, ok := a.m["mode"].(string); ok {
		s = strings.TrimSpace(s)
		if s == "preserve" {
			if !preserveOK {
				return w, a.err("mode", "preserve is only valid for copy and template")
			}
			w.Preserve = true
			return w, nil
		}
		if s != "" && strings.Trim(s, "01234567") != "" && !strings.HasPrefix(s, "0o") {
			if _, err := applySymbolic(0, false, s); err != nil {
				return w, a.err("mode", "want an octal mode like \"0644\" or a symbolic one like \"u=rw,g=r,o=\": %v", err)
			}
			w.Sym = s
			return w, nil
		}
	}
	m, has, err := parseMode(a, "mode")
	if err != nil {
		return w, err
	}
	w.Mode, w.HasMode = m, has
	return w, nil
}

func (w attrs) modeSet() bool { return w.HasMode || w.Sym != "" }

// want is the mode a path whose mode is cur must get; ok=false when the
// task does not set a mode.
func (w attrs) want(cur uint32, isDir bool) (uint32, bool) {
	if w.HasMode {
		return w.Mode, true
	}
	if w.Sym != "" {
		m, err := applySymbolic(cur, isDir, w.Sym)
		return m, err == nil // validated by parseAttrs
	}
	return 0, false
}

// modeArg is the mode as chmod takes it; chmodArg is it quoted.
func (w attrs) modeArg() string {
	if w.HasMode {
		return modeString(w.Mode)
	}
	return w.Sym
}

func (w attrs) chmodArg() string {
	if w.HasMode {
		return modeString(w.Mode)
	}
	return shq(w.Sym)
}

// apply returns the commands that set every wanted attribute on a path
// this task creates (quoted is the path already quoted for the shell).
func (w attrs) apply(quoted string) string {
	var cmds []string
	switch {
	case w.Owner != "" && w.Group != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner+":"+w.Group)+" "+quoted)
	case w.Owner != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner)+" "+quoted)
	case w.Group != "":
		cmds = append(cmds, "chgrp -h -- "+shq(w.Group)+" "+quoted)
	}
	if w.modeSet() {
		cmds = append(cmds, "chmod -- "+w.chmodArg()+" "+quoted)
	}
	return strings.Join(cmds, " && ")
}

// ownerMatches compares a wanted user or group (name or number) with what
// the probe saw.
func ownerMatches(want, name string, id int) bool {
	if want == "" {
		return true
	}
	if n, err := strconv.Atoi(want); err == nil {
		return n == id
	}
	return want == name
}

// fix returns the shell commands that bring an existing path to these
// attributes, or "" when it already has them.
func (w attrs) fix(st *fileState) string {
	var cmds []string
	ownOK := ownerMatches(w.Owner, st.Owner, st.UID)
	grpOK := ownerMatches(w.Group, st.Group, st.GID)
	switch {
	case !ownOK && w.Group != "":
		cmds = append(cmds, "chown -h -- "+shq(w.Owner+":"+w.Group)+" "+shq(st.Path))
	case !ownOK:
		cmds = append(cmds, "chown -h -- "+shq(w.Owner)+" "+shq(st.Path))
	case !grpOK:
		cmds = append(cmds, "chgrp -h -- "+shq(w.Group)+" "+shq(st.Path))
	}
	// chmod on a link would change its target; Linux links have no mode.
	if m, ok := w.want(st.Mode, st.Type == "directory"); ok && st.Mode != m && st.Type != "link" {
		cmds = append(cmds, "chmod -- "+modeString(m)+" "+shq(st.Path))
	}
	return strings.Join(cmds, " && ")
}

// upload places content at p atomically with the wanted attributes; unset
// ones keep the old file's values so a rewrite does not change ownership.
func upload(ctx context.Context, env *Env, p string, content []byte, w attrs, old *fileState) error {
	// Unset owner and group stay "": Put keeps the replaced file's then,
	// and starts no chown when the writer's are the same.
	mode, owner, group := uint32(0o644), w.Owner, w.Group
	if old != nil && old.Type == "file" {
		mode = old.Mode
	}
	if m, ok := w.want(mode, false); ok {
		mode = m
	}
	return env.Conn.Put(ctx, connection.Upload{
		Path: p, Content: bytes.NewReader(content), Size: int64(len(content)),
		Mode: mode, Owner: owner, Group: group,
		Become: env.Become, BecomeUser: env.BecomeUser,
	})
}

// backupScript copies p aside the way Ansible names backups.
func backupScript(p string, now time.Time) (script, name string) {
	name = p + "." + now.UTC().Format("2006-01-02@15:04:05") + "~"
	return "cp -p -- " + shq(p) + " " + shq(name), name
}

// unifiedDiff renders Ansible-style before/after diff text.
func unifiedDiff(p string, before, after []byte) string {
	if bytes.IndexByte(before, 0) >= 0 || bytes.IndexByte(after, 0) >= 0 {
		return fmt.Sprintf("Binary files before: %s and after: %s differ\n", p, p)
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(string(before)), B: diffLines(string(after)),
		FromFile: "before: " + p, ToFile: "after: " + p, Context: 3,
	})
	if err != nil {
		return ""
	}
	return text
}

// diffLines splits text for difflib without the phantom empty last line
// difflib.SplitLines adds after a final newline.
func diffLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		return lines[:len(lines)-1]
	}
	lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	return lines
}

// stateDiff renders a change of a path's or unit's state (no content) as
// a unified diff of "key: value" lines, like Ansible's before/after.
func stateDiff(name string, keys []string, before, after map[string]string) string {
	var b, a strings.Builder
	for _, k := range keys {
		if v, ok := before[k]; ok {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
		if v, ok := after[k]; ok {
			fmt.Fprintf(&a, "%s: %s\n", k, v)
		}
	}
	return unifiedDiff(name, []byte(b.String()), []byte(a.String()))
}

// maxDiffSize keeps --diff from fetching huge files.
const maxDiffSize = 1 << 20

// readSrc finds a control-machine file: in env.Files in order (role files/
// or templates/ first, then the playbook dir), or as an absolute path, or
// in the artifact cache. It returns the content, the name for messages and
// the file's permissions (for mode: preserve).
func readSrc(env *Env, src string) ([]byte, string, fs.FileMode, error) {
	if filepath.IsAbs(src) {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, "", 0, fmt.Errorf("src: %w", err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, "", 0, fmt.Errorf("src: %w", err)
		}
		return data, src, fi.Mode(), nil
	}
	name := path.Clean(filepath.ToSlash(src))
	if !fs.ValidPath(name) {
		return nil, "", 0, fmt.Errorf("src %q: must be a relative path inside the files/ directories or an absolute path", src)
	}
	for _, fsys := range env.Files {
		data, err := fs.ReadFile(fsys, name)
		if err == nil {
			perm := fs.FileMode(0o644)
			if fi, err := fs.Stat(fsys, name); err == nil {
				perm = fi.Mode()
			}
			return data, name, perm, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", 0, fmt.Errorf("src %q: %w", src, err)
		}
	}
	if env.ArtifactDir != "" {
		p := filepath.Join(env.ArtifactDir, filepath.FromSlash(name))
		if data, err := os.ReadFile(p); err == nil {
			perm := fs.FileMode(0o644)
			if fi, err := os.Stat(p); err == nil {
				perm = fi.Mode()
			}
			return data, name, perm, nil
		}
	}
	return nil, "", 0, fmt.Errorf("src %q: not found in %d search directories (role files/ or templates/, playbook dir, artifact cache): %w", src, len(env.Files), fs.ErrNotExist)
}

// resultFail turns an error of the host's side (a command that failed) into
// a failed result, and passes transport errors on.
func resultFail(err error, data map[string]any) (*Result, error) {
	var ee *connection.ExitError
	if errors.As(err, &ee) {
		if data == nil {
			data = map[string]any{}
		}
		data["rc"] = ee.RC
		data["stderr"] = ee.Stderr
		return &Result{Failed: true, Msg: fmt.Sprintf("%s (rc=%d)", strings.TrimSpace(ee.Stderr), ee.RC), Data: data}, nil
	}
	return nil, err
}
