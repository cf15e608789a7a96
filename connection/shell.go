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
// network round trip. Everything the request carries (script, stdin, env) is
// base64 inside quoted here-docs whose delimiter contains '_', a character
// base64 never produces, so no content can end a here-doc early. The script
// runs as a separate process with its stdin from a file, so it cannot read
// or exit the driving shell. Output comes back base64 between marker lines.

// shellPreamble is written once when a session opens; it defines the
// helpers the frames call, which keeps every frame small, and one temp
// directory reused by every request (requests on a shell are sequential).
// Forks are what a request costs on the host, so the helpers avoid them:
// empty outputs are not encoded, and without Env/Dir the script is exec'd
// directly.
const shellPreamble = `gk_ss=$(command -v setsid 2>/dev/null)
gk_p=
gk_D=$(mktemp -d "${TMPDIR:-/tmp}/.gokube.XXXXXXXX" 2>/dev/null) || gk_D=
gk_k() { if [ -n "$gk_p" ]; then kill -KILL -"$gk_p" 2>/dev/null || kill -KILL "$gk_p" 2>/dev/null; fi; }
trap 'gk_k; exit 143' TERM HUP INT
trap 'if [ -n "$gk_D" ]; then rm -rf "$gk_D"; fi' EXIT
gk_n() { gk_bad=; gk_env=; if [ -n "$gk_D" ]; then : >"$gk_D/i"; fi; }
gk_w() {
if [ -z "$gk_D" ]; then while read -r gk_l; do :; done; return; fi
base64 -d >"$gk_D/$1" || gk_bad=1
if [ "$1" = e ]; then gk_env=1; fi
}
gk_b() { if [ -s "$1" ]; then base64 <"$1"; fi; }
gk_go() {
gk_rc=255
if [ -n "$gk_D" ] && [ -z "$gk_bad" ]; then
if [ -n "$gk_env" ]; then
$gk_ss /bin/sh -c '. "$1/e" && exec /bin/sh "$1/s"' gokube "$gk_D" <"$gk_D/i" >"$gk_D/o" 2>"$gk_D/r" &
else
$gk_ss /bin/sh "$gk_D/s" <"$gk_D/i" >"$gk_D/o" 2>"$gk_D/r" &
fi
gk_p=$!
wait "$gk_p"
gk_rc=$?
gk_p=
printf '\n%s %s\n' "$1" "$gk_rc"
gk_b "$gk_D/o"
printf '%s\n' "$1.o"
gk_b "$gk_D/r"
printf '%s\n' "$1.e"
else
# Nothing runs unless the whole script arrived: a truncated script could
# do harm (think "rm -rf /var/lib/x" cut after the first slash).
printf '\n%s %s\n%s\n%s\n%s\n' "$1" "$gk_rc" "$1.o" Z29rdWJlOiBjYW5ub3Qgd3JpdGUgdGhlIHJlcXVlc3QgdG8gYSB0ZW1wb3JhcnkgZGlyZWN0b3J5IG9uIHRoZSBob3N0IChkaXNrIGZ1bGw/KQo= "$1.e"
fi
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

// buildFrame is the text written to the shell for one request.
func buildFrame(marker string, req Request) ([]byte, error) {
	env, err := envPrelude(req)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(req.Script)*4/3 + len(req.Stdin)*4/3 + 256)
	b.WriteString("gk_n\n")
	writeB64HereDoc(&b, "s", marker, []byte(req.Script))
	if len(req.Stdin) > 0 {
		writeB64HereDoc(&b, "i", marker, req.Stdin)
	}
	if env != "" {
		writeB64HereDoc(&b, "e", marker, []byte(env))
	}
	fmt.Fprintf(&b, "gk_go %s\n", marker)
	return b.Bytes(), nil
}

// errShellEnded means the shell's stdout closed before a full response.
var errShellEnded = errors.New("shell session ended")

// readFrame reads one response for marker. Lines before the marker line are
// noise (a login banner, a sudo warning) and are skipped.
func readFrame(r *bufio.Reader, marker string) (Result, error) {
	var res Result
	prefix := marker + " "
	for {
		line, err := readLine(r)
		if err != nil {
			return res, err
		}
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			rc, err := strconv.Atoi(rest)
			if err != nil {
				return res, fmt.Errorf("bad frame status %q", line)
			}
			res.RC = rc
			break
		}
	}
	var err error
	if res.Stdout, err = readB64Until(r, marker+".o"); err != nil {
		return res, err
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
	out, err := base64.StdEncoding.DecodeString(enc.String())
	if err != nil {
		return nil, fmt.Errorf("bad frame payload: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// putScript writes its stdin to path atomically: a temp file in the same
// directory gets content, mode and owner, then is renamed over the target.
// Without an explicit mode or owner the existing file's are kept.
func putScript(up Upload, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ngk_t=\np=%s\n", shQuote(up.Path))
	b.WriteString(`trap 'if [ -n "$gk_t" ]; then rm -f -- "$gk_t"; fi' EXIT
gk_t=$(mktemp "$(dirname -- "$p")/.gokube.XXXXXXXX")
`)
	if from == "" {
		b.WriteString("cat >\"$gk_t\"\n")
	} else {
		fmt.Fprintf(&b, "cat -- %s >\"$gk_t\"\n", shQuote(from))
	}
	// Owner first: chown clears setuid/setgid bits, so the mode comes after.
	if up.Owner == "" && up.Group == "" {
		b.WriteString("if [ -e \"$p\" ]; then chown --reference=\"$p\" \"$gk_t\" 2>/dev/null || true; fi\n")
	}
	if up.Owner != "" {
		fmt.Fprintf(&b, "chown -- %s \"$gk_t\"\n", shQuote(up.Owner))
	}
	if up.Group != "" {
		fmt.Fprintf(&b, "chgrp -- %s \"$gk_t\"\n", shQuote(up.Group))
	}
	if up.Mode != 0 {
		fmt.Fprintf(&b, "chmod %04o \"$gk_t\"\n", up.Mode&0o7777)
	} else {
		b.WriteString("if [ -e \"$p\" ]; then chmod --reference=\"$p\" \"$gk_t\"; else chmod 0644 \"$gk_t\"; fi\n")
	}
	b.WriteString("mv -f -- \"$gk_t\" \"$p\"\ngk_t=\n")
	if from != "" {
		fmt.Fprintf(&b, "rm -f -- %s 2>/dev/null || true\n", shQuote(from))
	}
	return b.String()
}

// getRCMissing is the exit code getScript uses for a missing file.
const getRCMissing = 3

func getScript(path string) string {
	return fmt.Sprintf("p=%s\n[ -e \"$p\" ] || { echo \"$p: no such file\" >&2; exit %d; }\nexec cat -- \"$p\"\n", shQuote(path), getRCMissing)
}
