package connection

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// RunLock is the per-host lock of one run (SSHConfig.Lock). Two runs that
// edit the same files at the same time lose updates and both report
// success, so the first shell a run opens on a host takes
// /run/gokube/lock before its first request runs; a second run waits for
// it, then fails naming the holder.
//
// The lock costs no round trip and, when free, no process on the host:
// its script travels in the shell's preamble with the first frame, and it
// is created with the shell's noclobber redirection (O_EXCL). The file
// names the run, the user and the holding shell's pid with the pid's start
// time, so a lock whose shell is gone (a run killed with SIGKILL, a
// connection cut) is seen as dead and taken over; a lock the same run holds
// through another connection to the same machine (two inventory names for
// one host) is shared. The holder removes it when its shell ends.
//
// Stale temp files are tied to it: once a run holds the lock, uploads in
// the login home (.gokube-upload-*) and put temp files (.gokube.*) older
// than the lock file belong to runs that are over, and are removed (the
// uploads when the lock is taken, the put temp files by the next put into
// their directory).
type RunLock struct {
	ID    string    // the run's id (random)
	User  string    // who runs it, e.g. "alice@laptop"
	Start time.Time // when the run started
	// Wait is how many one-second tries a run makes while another live
	// run holds the lock before it fails (default 60).
	Wait int
}

// LockPath is the lock's file on every host.
const LockPath = "/run/gokube/lock"

// lockedPrefix starts the stderr of every request refused because
// another run holds the host (rc lockedRC).
const (
	lockedPrefix = "gokube: host is locked by another run: "
	lockedRC     = 255
)

// LockedError is a request refused because another live run holds the
// host's lock after the wait.
type LockedError struct {
	Host   string
	Holder string // the lock file's line: run, user, start, pid
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: another gokube run holds %s (%s); it was waited for and did not end: wait for it or end it", e.Host, LockPath, e.Holder)
}

// IsLocked reports whether err is or wraps a *LockedError.
func IsLocked(err error) bool {
	var l *LockedError
	return errors.As(err, &l)
}

// needLock reports whether the next shell, of key (shellKey), must take
// the run lock: one is wanted, the shell runs as root (only root writes
// /run/gokube; a login that is not root takes it in its first become
// shell) and no live shell holds it (a shell that died released it).
// Callers hold c.mu.
func (c *sshConn) needLock(key string) bool {
	root := key == "root" || key == "" && c.cfg.User == "root"
	return c.cfg.Lock != nil && root && (c.lockShell == nil || c.lockShell.dead.Load())
}

// lockedResult turns a refused frame's result into a *LockedError.
func lockedResult(host string, res Result) error {
	if res.RC != lockedRC {
		return nil
	}
	rest, ok := bytes.CutPrefix(res.Stderr, []byte(lockedPrefix))
	if !ok {
		return nil
	}
	return &LockedError{Host: host, Holder: strings.TrimSpace(string(rest))}
}

var lockWordRE = regexp.MustCompile(`[^A-Za-z0-9_.@:+-]`)

// lockWord keeps s to characters that need no quoting and hold no space
// (the lock line is split at spaces).
func lockWord(s string) string {
	s = lockWordRE.ReplaceAllString(s, "_")
	if s == "" {
		return "-"
	}
	return s
}

// homeGlob is the login user's home as the shell expands it (~name: a
// become shell's $HOME is the target user's), or $HOME when the name
// cannot be written unquoted.
var loginRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*$`)

func homeGlob(login string) string {
	if loginRE.MatchString(login) {
		return "~" + login
	}
	return `"$HOME"`
}

// lockPreamble is the shell text, sent after shellPreamble, that takes
// the lock for the session (see RunLock). It is sent to root shells only;
// where /run/gokube cannot be made the run goes unlocked.
//
// gk_st PID sets gk_s to PID's start time (field 22 of /proc/PID/stat,
// after the command name in parentheses), with builtins only.
func lockPreamble(l *RunLock, login, path string) string {
	wait := l.Wait
	if wait <= 0 {
		wait = 60
	}
	line := fmt.Sprintf("run=%s user=%s start=%s", lockWord(l.ID), lockWord(l.User), l.Start.UTC().Format(time.RFC3339))
	var b strings.Builder
	fmt.Fprintf(&b, "gk_L=%s\ngk_lk=\ngk_lo=\n", shQuote(path))
	b.WriteString(`gk_st() { gk_s=; read -r gk_s </proc/"$1"/stat 2>/dev/null || return 1; gk_s=${gk_s##*) }; set -- $gk_s; shift 19; gk_s=$1; }
gk_unlock() { if [ -n "$gk_lo" ] && read -r gk_l <"$gk_L" 2>/dev/null && [ "$gk_l" = "$gk_li" ]; then rm -f -- "$gk_L"; fi; gk_lo=; }
gk_lock() {
[ -d "${gk_L%/*}" ] || mkdir -m 0755 "${gk_L%/*}" 2>/dev/null || return 0
gk_st $$ || return 0
gk_li="$1 pid=$$ pst=$gk_s"
gk_i=0
gk_e=0
while :; do
set -C
{ printf '%s\n' "$gk_li" >"$gk_L"; } 2>/dev/null
gk_r=$?
set +C
if [ "$gk_r" -eq 0 ]; then gk_lo=1; return 0; fi
gk_h=
read -r gk_h <"$gk_L" 2>/dev/null
case $gk_h in
"$1 "*) return 0;;
*" pid="*" pst="*)
gk_p=${gk_h##* pid=}; gk_hs=${gk_p##* pst=}; gk_p=${gk_p%% *}
if ! gk_st "$gk_p" || [ "$gk_s" != "$gk_hs" ]; then
gk_l=; read -r gk_l <"$gk_L" 2>/dev/null
if [ "$gk_l" = "$gk_h" ]; then rm -f -- "$gk_L"; fi
continue
fi
gk_e=0;;
*)
# Created but not written yet, or left empty by a shell killed in
# between: empty twice a second apart is dead.
gk_e=$((gk_e+1))
if [ "$gk_e" -ge 2 ]; then rm -f -- "$gk_L"; gk_e=0; continue; fi;;
esac
gk_i=$((gk_i+1))
if [ "$gk_i" -gt "$2" ]; then gk_lk=${gk_h:-unknown holder}; return 1; fi
sleep 1
done
}
`)
	home := homeGlob(login)
	fmt.Fprintf(&b, `if gk_lock %s %d; then
if [ -n "$gk_lo" ]; then
set --
for gk_f in %s/.gokube-upload-%s; do if [ -f "$gk_f" ] && [ "$gk_f" -ot "$gk_L" ]; then set -- "$@" "$gk_f"; fi; done
if [ "$#" -gt 0 ]; then rm -f -- "$@"; fi
fi
else
gk_go() { printf '\n%%s %d\n%%s\n' "$1" "$1.o"; printf '%%s%%s\n' %s "$gk_lk" | base64; printf '%%s\n' "$1.e"; }
fi
`, shQuote(line), wait, home, tempGlob, lockedRC, shQuote(lockedPrefix))
	return b.String()
}

// tempGlob matches the random tag of gokube's temp file names (24 hex
// digits, newMarker), so no other file is ever taken for one.
const tempGlob = "[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]"

// staleTempsScript removes put temp files older than the run lock in the
// destination's directory ($gk_d of putScript): the lock is newer than any
// temp file of a run that is over, and older than every temp file of the
// run that holds it.
const staleTempsScript = `if [ -f ` + LockPath + ` ]; then for gk_f in "${gk_d:-/}"/.gokube.` + tempGlob + `; do if [ -f "$gk_f" ] && [ "$gk_f" -ot ` + LockPath + ` ]; then rm -f -- "$gk_f"; fi; done; fi
`
