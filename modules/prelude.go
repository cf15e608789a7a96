package modules

// The probe batch's prelude: what the file probes of a batch share (one
// stat, one hashing process per algorithm, the host's hash cache, the scan
// of symbolic links), put before the batch by the executor.

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

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
		if d.sum == sumSHA256 && !seen["\x00sha256\x00"+p] {
			seen["\x00sha256\x00"+p] = true
			sums = append(sums, p)
		}
		if d.sum == sumSHA1 && !seen["\x00sha1\x00"+p] {
			seen["\x00sha1\x00"+p] = true
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
	// exec: the command substitution's own process becomes the hashing
	// program (dash forks once more for a command that eval runs).
	for _, h := range []struct{ list, tool, v string }{{"gk_m", "sha256sum", "h"}, {"gk_m1", "sha1sum", "g"}} {
		fmt.Fprintf(&b, `if [ -n "$%[1]s" ]; then
while IFS= read -r gk_l; do gk_idx "${gk_l#*"  "}"; if [ -n "$gk_i" ]; then eval "gk_%[3]s$gk_i=\${gk_l%%%%\" \"*}"; fi; done <<GK_SUMS_EOF
$(eval "exec %[2]s --$%[1]s" 2>/dev/null)
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
