package connection

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The persistent shell protocol. One /bin/sh reads framed requests from its
// stdin for the whole run; each request costs one write and one read, so one
// network round trip.
//
// The script and the Env/Dir prelude travel as single-quoted words
// assigned to the shell's variables (gk_qs, gk_qv), literal text the
// request evaluates, so no process starts to decode them and none to
// feed them (a here-doc over 4 KiB, as every probe batch is, makes dash
// fork a writer: 4 forks in a cold run). The request is a brace group,
// which the shell parses to its closing brace before running anything,
// so a request cut short by a broken connection never runs. A script that
// runs as its own shell (OwnShell) is a quoted here-doc read through
// /dev/fd/3, its delimiter a fresh random marker per request.
// Stdin is binary, so it travels base64-encoded (base64 never produces the
// marker's '_') and is decoded into a file.
//
// The script runs in a forked subshell of the driving shell (no exec: a
// process start costs 10-30 ms on a busy host, and every request paid one
// for its own /bin/sh), evaluated with no positional
// parameters, its stdin and stderr redirected to files: it cannot read the
// following frames or end the driving shell with exit, and what it changes
// (variables, cd, umask, traps, set -e) ends with the subshell. Its stdout
// is the session's own, streamed raw between a start line and the status
// line, so a request's output costs no process either; stderr, usually
// empty, comes back base64 when there is any. Per request the host forks
// once (the subshell) and starts base64 only for a non-empty stderr.
//
// A request with Inline (Request.Inline: puts, the file module's and
// useradd's short changes) runs in the driving shell itself, through a
// function (gk_in) so that it sees no positional parameters: no fork at
// all. Such a script is written for it: it neither exits nor changes the
// shell's state (putScript puts the umask back), assigns none of the
// session's names (TestInlinePutKeepsSessionNames), and runs a program
// that may take long as a job it waits for, since a shell running a
// foreground program defers the cancellation's trap until it ends.
//
// A request with OwnShell (a user's shell or command task) runs as its own
// /bin/sh ($$ its own) with stdout to a file too, sent back base64: a
// user's command may leave a process running in the background, which
// must not hold the session's stdout (its output would land in later
// frames, and a session shell killed without its trap would not end the
// session while it runs). gokube's own scripts start nothing that
// outlives them.

// shellPreamble is written once when a session opens; it defines the
// helpers the frames call, which keeps every frame small, and two temp
// files reused by every request (requests on a shell are sequential):
// the script's stdin (${gk_D}i), stderr (${gk_D}r) and, for OwnShell,
// stdout (${gk_D}o).
//
// The files are made with builtins only: a random name from the kernel
// (/proc/sys/kernel/random/uuid, read), created with noclobber (O_EXCL: a
// name taken by anyone else, a link included, fails) under umask 077, the
// session's own umask read back from a file first (a command substitution
// would fork). Without /proc, mktemp -d makes a directory as before. gk_T
// is what the session's end removes, with one rm either way.
//
// A pipeline (Pipeliner.Send) marks its frames after the first with p:
// such a frame does not run when a request before it failed since the
// last frame without the mark, and answers notRunRC with notRunMsg.
//
// Cancellation sends TERM to the session: the trap kills the shell's whole
// process group (the shell is a session leader under sshd), which holds
// the script and everything it started.
//
// In the session, mkdir, install, ln, chown, chgrp and chmod are shell
// functions (gk_x): in the session's shell they ask the session's helper
// (sessionHelper) first, so gokube's own scripts (the file module's
// changes, puts) need not know about it; anywhere else, and for anything
// the helper declines, they run the program (in the session's shell as a
// job it waits for, so that a cancellation is not deferred; gk_S marks
// that shell, a subshell's stdin is its own). A user's command
// runs in a shell of its own (OwnShell), which has none of them; the
// session's own preamble calls the programs with command.
const shellPreamble = `gk_D=; gk_T=; gk_u=
if read -r gk_T </proc/sys/kernel/random/uuid 2>/dev/null && [ -n "$gk_T" ]; then
gk_T=${TMPDIR:-/tmp}/.gokube.$gk_T
set -C
if { umask >"$gk_T.u"; } 2>/dev/null && read -r gk_u <"$gk_T.u" && [ -n "$gk_u" ]; then
umask 077
if { : >"$gk_T.i" && : >"$gk_T.o" && : >"$gk_T.r"; } 2>/dev/null; then gk_D=$gk_T.; fi
umask "$gk_u"
fi
set +C
fi
if [ -z "$gk_D" ]; then
if [ -n "$gk_T" ]; then rm -f -- "$gk_T.u" "$gk_T.i" "$gk_T.o" "$gk_T.r" 2>/dev/null; fi
gk_T=$(mktemp -d "${TMPDIR:-/tmp}/.gokube.XXXXXXXX" 2>/dev/null) && gk_D=$gk_T/ || gk_T=
fi
gk_unlock() { if [ -n "$gk_T" ]; then gk_rm "$gk_T" "$gk_T.u" "$gk_T.i" "$gk_T.o" "$gk_T.r" "$gk_T.hi" "$gk_T.ho"; gk_T=; gk_D=; fi; }
trap 'gk_unlock; kill -KILL 0; exit 143' TERM HUP INT
trap 'gk_unlock' EXIT
gk_n() { gk_bad=; if [ -n "$gk_D" ]; then : >"${gk_D}i"; fi; }
gk_w() {
if [ -z "$gk_D" ]; then while read -r gk_l; do :; done; return; fi
base64 -d >"$gk_D$1" || gk_bad=1
}
gk_b() { if [ -s "$1" ]; then base64 <"$1"; fi; }
gk_pf=
gk_in() { eval "$gk_qs"; }
gk_H=; gk_S=1; gk_nl='
'
gk_hp='` + sessionHelper + `'
gk_hs() {
gk_H=0
[ -n "$gk_D" ] || return 0
command -v perl >/dev/null 2>&1 || return 0
mkfifo -m 600 -- "${gk_D}hi" "${gk_D}ho" 2>/dev/null || return 0
perl -e "$gk_hp" -- "${gk_D}hi" "${gk_D}ho" "$gk_u" </dev/null >/dev/null 2>&1 3<&- 4<&- &
if wait "$!" && [ -p "${gk_D}hi" ] && [ -p "${gk_D}ho" ]; then
exec 7<>"${gk_D}hi" 9<>"${gk_D}ho" 8<"${gk_D}ho" 9<&-
if printf 'h\n' >&7 && read -r gk_ha <&8; then case $gk_ha in "ok "*) gk_H=1 gk_Hp=${gk_ha#ok };; esac; fi
fi
if [ "$gk_H" = 0 ]; then exec 7>&- 8<&-; rm -f -- "${gk_D}hi" "${gk_D}ho"; fi
}
gk_mv() {
if [ -z "$gk_H" ]; then gk_hs; fi
case $1$2 in *"$gk_nl"*) ;; *)
if [ "$gk_H" = 1 ]; then
if printf 'r\n%s\n%s\n' "$1" "$2" >&7 && read -r gk_ha <&8; then
if [ "$gk_ha" = 0 ]; then return 0; fi
else gk_H=0; fi
fi;;
esac
mv -f -- "$1" "$2" & wait "$!"
}
gk_x() {
if [ -z "$gk_H" ]; then gk_hs; fi
if [ "$gk_H" = 1 ]; then case $* in *"$gk_nl"*) ;; *)
if printf 'x\n%s\n' "$#" >&7 && printf '%s\n' "$@" >&7 && read -r gk_ha <&8; then
if [ "$gk_ha" = 0 ]; then return 0; fi
else gk_H=0; fi;;
esac; fi
if [ -n "$gk_S" ]; then command "$@" & wait "$!"; else command "$@"; fi
}
mkdir() { gk_x mkdir "$@"; }
install() { gk_x install "$@"; }
ln() { gk_x ln "$@"; }
chown() { gk_x chown "$@"; }
chgrp() { gk_x chgrp "$@"; }
chmod() { gk_x chmod "$@"; }
gk_rm() {
for gk_rmp do
if [ "$gk_H" = 1 ]; then case $gk_rmp in *"$gk_nl"*) ;; *) printf 'u\n%s\n\n' "$gk_rmp" >&7 && read -r gk_ha <&8 || gk_H=0;; esac; fi
done
for gk_rmp do if [ -e "$gk_rmp" ] || [ -h "$gk_rmp" ]; then rm -rf -- "$@"; return; fi; done
}
gk_go() {
gk_rc=255
case $4 in
p) if [ -n "$gk_pf" ]; then printf '%s.s\n\n%s %s\n%s\n%s\n' "$1" "$1" ` + notRunRC + ` ` + notRunB64 + ` "$1.e"; return; fi;;
*) gk_pf=;;
esac
if [ -n "$gk_D" ] && [ -z "$gk_bad" ]; then
printf '%s.s\n' "$1"
if [ "$3" = i ] && [ -n "$gk_u" ]; then
{ gk_in; } <"${gk_D}i" 2>"${gk_D}r"
gk_rc=$?
else
(gk_H=0 gk_S= gk_E=$2 gk_X=$3; set --; if [ "$gk_E" = e ]; then eval "$gk_qv"; fi; if [ "$gk_X" = x ]; then exec /bin/sh /dev/fd/3 >"${gk_D}o"; fi; eval "$gk_qs") <"${gk_D}i" 2>"${gk_D}r" 7>&- 8<&- &
wait "$!"
gk_rc=$?
fi
if [ "$3" = x ]; then gk_b "${gk_D}o"; fi
printf '\n%s %s\n' "$1" "$gk_rc"
gk_b "${gk_D}r"
printf '%s\n' "$1.e"
else
printf '%s.s\n\n%s %s\n%s\n%s\n' "$1" "$1" "$gk_rc" Z29rdWJlOiBjYW5ub3Qgd3JpdGUgdGhlIHJlcXVlc3QgdG8gYSB0ZW1wb3JhcnkgZGlyZWN0b3J5IG9uIHRoZSBob3N0IChkaXNrIGZ1bGw/KQo= "$1.e"
fi
if [ "$gk_rc" != 0 ]; then gk_pf=1; fi
}
`

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// newMarker returns a random frame marker. The '_' keeps it out of the
// base64 alphabet.
func newMarker() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // cannot happen on Linux
	}
	return "GK_" + hex.EncodeToString(b[:])
}

// shQuote quotes s for /bin/sh.
func shQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// envPrelude is the shell text that exports req.Env and changes to req.Dir.
func envPrelude(req Request) (string, error) {
	var b strings.Builder
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		if !envNameRE.MatchString(k) {
			return "", fmt.Errorf("invalid environment variable name %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.ContainsRune(req.Env[k], 0) {
			return "", fmt.Errorf("environment variable %s contains a NUL byte", k)
		}
		fmt.Fprintf(&b, "export %s=%s\n", k, shQuote(req.Env[k]))
	}
	if req.Dir != "" {
		fmt.Fprintf(&b, "cd -- %s || exit 1\n", shQuote(req.Dir))
	}
	return b.String(), nil
}

func writeB64HereDoc(b *bytes.Buffer, name, marker string, data []byte) {
	fmt.Fprintf(b, "gk_w %s <<'%s'\n", name, marker)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteByte('\n')
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc)
		b.WriteByte('\n')
	}
	b.WriteString(marker)
	b.WriteByte('\n')
}

// buildFrame is the text written to the shell for one request; behind
// marks a frame of a pipeline after its first, which does not run when
// one before it failed. The marker must not occur as a line of the script
// or env prelude; frameFor picks one.
func buildFrame(marker string, req Request, behind bool) ([]byte, error) {
	if strings.IndexByte(req.Script, 0) >= 0 {
		return nil, errors.New("script contains a NUL byte")
	}
	env, err := envPrelude(req)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(req.Script) + len(req.Stdin)*4/3 + len(env) + 256)
	b.WriteString("gk_n\n")
	if len(req.Stdin) > 0 {
		writeB64HereDoc(&b, "i", marker, req.Stdin)
	}
	// The brace group makes the shell read up to the closing brace
	// before running anything: a here-doc cut short by EOF would
	// otherwise run what arrived.
	flags := "-"
	if env != "" {
		flags = "e"
	}
	switch {
	case req.OwnShell:
		flags += " x"
	case req.Inline && env == "":
		flags += " i"
	default:
		flags += " -"
	}
	if behind {
		flags += " p"
	} else {
		flags += " -"
	}
	b.WriteString("{ ")
	if env != "" {
		b.WriteString("gk_qv=" + singleQuoted(env) + "\n")
	}
	if !req.OwnShell {
		b.WriteString("gk_qs=" + singleQuoted(req.Script) + "\n")
		fmt.Fprintf(&b, "gk_go %s %s\n}\n", marker, flags)
		return b.Bytes(), nil
	}
	// A shell of its own reads its script from a file: a here-doc.
	fmt.Fprintf(&b, "gk_go %s %s 3<<'%s'\n", marker, flags, marker)
	b.WriteString(req.Script)
	if req.Script != "" && !strings.HasSuffix(req.Script, "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(marker + "\n}\n")
	return b.Bytes(), nil
}

// Job is cmd as a job its shell waits for: a shell running a program in
// the foreground defers its TERM trap (a cancellation) until the program
// ends, but wait returns at once. A script that may run in the session's
// shell itself (Request.Inline) runs a program that may take long so.
func Job(cmd string) string { return "{ " + cmd + " & wait \"$!\"; }" }

// singleQuoted quotes s as one single-quoted shell word (the shell keeps
// every byte of it literally).
func singleQuoted(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// frameFor picks a marker that no line of the request's text equals and
// builds the frame (behind: see buildFrame).
func frameFor(req Request, behind bool) (string, []byte, error) {
	for {
		m := newMarker()
		if strings.Contains(req.Script, m) || strings.Contains(envKeysValues(req), m) {
			continue
		}
		f, err := buildFrame(m, req, behind)
		return m, f, err
	}
}

func envKeysValues(req Request) string {
	var b strings.Builder
	for k, v := range req.Env {
		b.WriteString(k)
		b.WriteString(v)
	}
	return b.String() + req.Dir
}

// errShellEnded means the shell's stdout closed before a full response.
var errShellEnded = errors.New("shell session ended")

// readFrame reads one response for marker: the start line, the script's
// raw stdout, the status line (always after a newline gk_go prints, so it
// starts a line of its own) and stderr in base64. Lines before the start
// line are noise (a login banner, a sudo warning, late output of a
// process an earlier request left running) and are skipped; the start
// marker may end such a line when the noise lacked a final newline.
//
// With b64Stdout (an OwnShell request) the output between the start and
// status lines is its stdout file in base64.
func readFrame(r *bufio.Reader, marker string, b64Stdout bool) (Result, error) {
	var res Result
	start := marker + ".s"
	for {
		line, err := readLine(r)
		if err != nil {
			return res, err
		}
		if strings.HasSuffix(line, start) {
			break
		}
	}
	// The status line is "\n<marker> <rc>\n"; a line of the output equal
	// to it would need the request's random marker.
	prefix := []byte(marker + " ")
	var out []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			out = append(out, line...)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return res, errShellEnded
			}
			return res, err
		}
		// Only a whole line can be the status line: out ends in a newline
		// (gk_go's) or is empty (the first line of a malformed answer).
		if bytes.HasPrefix(line, prefix) && len(out) > 0 && out[len(out)-1] == '\n' {
			if rc, err := strconv.Atoi(string(line[len(prefix) : len(line)-1])); err == nil && rc >= 0 {
				res.RC = rc
				out = out[:len(out)-1]
				break
			}
		}
		out = append(out, line...)
	}
	var err error
	switch {
	case b64Stdout:
		if res.Stdout, err = decodeB64(strings.Join(strings.Fields(string(out)), "")); err != nil {
			return res, err
		}
	case len(out) > 0:
		res.Stdout = out
	}
	if res.Stderr, err = readB64Until(r, marker+".e"); err != nil {
		return res, err
	}
	return res, nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", errShellEnded
		}
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func readB64Until(r *bufio.Reader, end string) ([]byte, error) {
	var enc strings.Builder
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if line == end {
			break
		}
		enc.WriteString(strings.TrimSpace(line))
	}
	return decodeB64(enc.String())
}

// decodeB64 decodes a frame's base64 payload; nothing decodes to nil.
func decodeB64(enc string) ([]byte, error) {
	out, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("bad frame payload: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// putScript writes content to path atomically: a temp file in the same
// directory gets content, mode and owner, then is renamed over the target.
// Without an explicit mode or owner the existing file's are kept.
//
// Every process started on a host costs 10-30 ms on a busy one, so the
// script starts only what the change itself needs: the rename (mv; sh has
// no rename builtin), chown/chgrp when the owner or group is not what the
// writer's would be, chmod when the mode has bits a umask cannot give.
// Content up to inlinePutLimit travels in the script as a printf format
// (a builtin) rather than as stdin (base64 -d and cat), and a mode within
// 0666 is given by the umask the temp file is created under.
//
// The content comes from, in order: inline (when non-nil), the file from
// on the host (an upload), or the script's stdin.
//
// The temp file is named by tag (putTemp), so that when a cancellation
// kills the script before its trap runs, the caller can remove it.
func putScript(up Upload, from, tag string, inline []byte) string {
	// The script may run in the session's shell itself (Request.Inline):
	// no exit, no set -e, no trap, and the umask it sets is put back; a
	// failure stops the chain below with the failing command's status and
	// message, and the temp file, when it is ours, is removed.
	var b strings.Builder
	fmt.Fprintf(&b, "gk_t= gk_r=1\ngk_p=%s\n", shQuote(up.Path))
	b.WriteString("case $gk_p in */*) gk_d=${gk_p%/*};; *) gk_d=.;; esac\n")
	b.WriteString(staleTempsScript)
	fmt.Fprintf(&b, "gk_t=\"${gk_d:-/}/.gokube.%s\"\n", tag)
	// The umask: the session's own is put back (gk_u, read when the
	// session opened; a script of its own shell has no need to).
	umaskMode := up.Mode != 0 && up.Mode&^0o666 == 0
	if umaskMode {
		fmt.Fprintf(&b, "umask %04o\n", ^up.Mode&0o777)
	}
	// noclobber: the name is the caller's, the file must be new. printf is
	// a regular builtin: a failed redirection returns 1 without ending the
	// shell, and no subshell is needed. A name someone else holds is not
	// ours to remove.
	b.WriteString("set -C\nif printf '' >\"$gk_t\"; then set +C; else gk_r=$?; set +C; gk_t=; fi\n")
	if umaskMode {
		b.WriteString("if [ -n \"${gk_u-}\" ]; then umask \"$gk_u\"; fi\n")
	}
	// A program runs as a job the shell waits for (Job). chown, chgrp and
	// chmod are written plainly: in the session they are its functions
	// (gk_x), which give them to the helper or run the program as a job;
	// elsewhere (Local: a shell of its own, killed whole when cancelled)
	// they are the programs. A --reference form is the helper's never:
	// command runs the program itself.
	steps := []string{}
	switch {
	case inline != nil:
		if len(inline) > 0 {
			steps = append(steps, fmt.Sprintf("printf %s >\"$gk_t\"", printfFormat(inline)))
		}
	case from == "":
		// Stdin: a job's is /dev/null, so this one runs in the foreground
		// (no Inline for it: sshfile).
		steps = append(steps, "cat >\"$gk_t\"")
	default:
		steps = append(steps, Job(fmt.Sprintf("cat -- %s >\"$gk_t\"", shQuote(from))))
	}
	// Owner first: chown clears setuid/setgid bits, so the mode comes after.
	if up.Owner == "" {
		// The replaced file's owner and group are kept unless given; the
		// temp file already has them when the file is the writer's (test
		// builtins, no process).
		steps = append(steps, "{ if [ -e \"$gk_p\" ] && ! { [ -O \"$gk_p\" ] && [ -G \"$gk_p\" ] && [ -G \"$gk_t\" ]; }; then "+Job("command chown --reference=\"$gk_p\" \"$gk_t\"")+" 2>/dev/null || :; fi; }")
	}
	switch {
	case up.Owner != "" && up.Group != "":
		steps = append(steps, fmt.Sprintf("chown -- %s \"$gk_t\"", shQuote(up.Owner+":"+up.Group)))
	case up.Owner != "":
		steps = append(steps, fmt.Sprintf("chown -- %s \"$gk_t\"", shQuote(up.Owner)))
	case up.Group != "":
		steps = append(steps, fmt.Sprintf("chgrp -- %s \"$gk_t\"", shQuote(up.Group)))
	}
	switch {
	case umaskMode:
		// Created with the mode; chown clears only setuid/setgid bits,
		// which a mode within 0666 does not have.
	case up.Mode != 0:
		steps = append(steps, fmt.Sprintf("chmod %04o \"$gk_t\"", up.Mode&0o7777))
	default:
		steps = append(steps, "if [ -e \"$gk_p\" ]; then "+Job("command chmod --reference=\"$gk_p\" \"$gk_t\"")+"; else chmod 0644 \"$gk_t\"; fi")
	}
	// The rename: through the session's helper where there is one
	// (gk_mv), a job of mv where not (a shell of its own: Local).
	steps = append(steps, "if command -v gk_mv >/dev/null 2>&1; then gk_mv \"$gk_t\" \"$gk_p\"; else "+Job("mv -f -- \"$gk_t\" \"$gk_p\"")+"; fi")
	b.WriteString("if [ -n \"$gk_t\" ]; then\nif " + strings.Join(steps, " &&\n") + "\nthen gk_t= gk_r=0\nelse gk_r=$?\nfi\n")
	if from != "" {
		fmt.Fprintf(&b, "rm -f -- %s 2>/dev/null || :\n", shQuote(from))
	}
	b.WriteString("if [ -n \"$gk_t\" ]; then rm -f -- \"$gk_t\"; gk_t=; fi\nfi\n")
	// The script's status: the failing step's, 0 when all went through.
	b.WriteString("gk_ret() { return \"$1\"; }\ngk_ret \"$gk_r\"\n")
	return b.String()
}

// inlinePutLimit is the largest content putScript carries in the script
// itself: past it the printf format (up to 4 bytes a byte) outweighs the
// two processes stdin costs.
const inlinePutLimit = 64 << 10

// printfFormat quotes data as one shell word that printf turns back into
// exactly data: % and \ doubled, bytes outside printable ASCII (and NUL)
// and a leading - (an option otherwise) as three-digit octal escapes,
// which POSIX printf decodes.
func printfFormat(data []byte) string {
	var b strings.Builder
	b.Grow(len(data) + len(data)/8 + 2)
	b.WriteByte('\'')
	for i, c := range data {
		switch {
		case i == 0 && c == '-':
			b.WriteString(`\055`) // not an option to printf
		case c == '%':
			b.WriteString("%%")
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\'':
			b.WriteString(`'\''`)
		case c == '\n' || c == '\t' || c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\%03o`, c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// putTemp is the temp file putScript uses for a put of path with tag.
func putTemp(p, tag string) string {
	d := "."
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		d = p[:i]
	}
	if d == "" {
		d = "/"
	}
	return strings.TrimSuffix(d, "/") + "/.gokube." + tag
}

// getRCMissing is the exit code getScript uses for a missing file.
const getRCMissing = 3

func getScript(path string) string {
	return fmt.Sprintf("p=%s\n[ -e \"$p\" ] || { echo \"$p: no such file\" >&2; exit %d; }\nexec cat -- \"$p\"\n", shQuote(path), getRCMissing)
}
