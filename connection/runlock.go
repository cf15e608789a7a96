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
// success, so a run takes a lock on every host before its first request
// runs there; a second run waits for it, then fails naming the holder.
//
// Which lock: a shell that runs as root takes /run/gokube/lock (LockPath).
// A login that is not root takes its own per-user lock, ~/.gokube-lock
// (UserLockName), in its login shell: it is the one place on the host
// that the user can always write, that every run of that user finds
// whatever its session (an SSH exec session, cron, sudo -u: $XDG_RUNTIME_DIR
// exists only under pam_systemd and differs between them), and that a root
// shell can find too (~login). A run that becomes root takes both, always
// the user's first: a become shell of a non-root login takes the user lock
// (unless the run holds it already) and then the root lock. With one order
// two runs of the same user cannot each hold one and wait for the other;
// a run of another user or of a root login takes at most its own user
// lock then the root lock, so no cycle forms either. A shell that becomes
// another user that is not root (become_user: postgres) takes no lock of
// its own.
//
// A lock costs no round trip and, when free, no process on the host: its
// script travels in the shell's preamble with the first frame, and it is
// created with the shell's noclobber redirection (O_EXCL). The file names
// the run, the user and the holding shell's pid with the pid's start time
// and the host's boot id, so a lock whose shell is gone (a run killed with
// SIGKILL, a connection cut, a reboot: the per-user lock is not on a
// tmpfs) is seen as dead and taken over; a lock the same run holds through
// another connection to the same machine (two inventory names for one
// host) is shared. The holder removes it when its shell ends. The local
// connection takes the same lock on the control machine from Go
// (takeLock), so it and SSH runs to the control machine exclude each
// other.
//
// Stale temp files are tied to it: once a run holds the lock, uploads in
// the login home (.gokube-upload-*) and put temp files (.gokube.*) older
// than the lock file belong to runs that are over, and are removed (the
// uploads when the login's lock is taken, the put temp files by the next
// put into their directory, against the lock of the user the put runs
// as).
type RunLock struct {
	ID    string    // the run's id (random)
	User  string    // who runs it, e.g. "alice@laptop"
	Start time.Time // when the run started
	// Wait is how many one-second tries a run makes while another live
	// run holds the lock before it fails (default 60).
	Wait int
}

// LockPath is the root lock's file on every host.
const LockPath = "/run/gokube/lock"

// UserLockName is the per-user lock's file in the home of a login that is
// not root.
const UserLockName = ".gokube-lock"

// lockedPrefix starts the stderr of every request refused because
// another run holds the host (rc lockedRC); the lock's path and the
// holder's line follow, one a line.
const (
	lockedPrefix = "gokube: host is locked by another run: "
	lockedRC     = 255
)

// LockedError is a request refused because another live run holds the
// host's lock after the wait.
type LockedError struct {
	Host   string
	Path   string // the lock file
	Holder string // the lock file's line: run, user, start, pid
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: another gokube run holds %s (%s); it was waited for and did not end: wait for it or end it", e.Host, e.Path, e.Holder)
}

// IsLocked reports whether err is or wraps a *LockedError.
func IsLocked(err error) bool {
	var l *LockedError
	return errors.As(err, &l)
}

// lockNeed is which locks a new shell takes: the login's per-user lock
// (a login that is not root) first, then the root lock.
type lockNeed struct{ user, root bool }

// locksFor is what the next shell, of key (shellKey), must take: the
// locks a shell running as that user needs (see RunLock) that no live
// shell of the connection holds (a shell that died released its own).
// Callers hold c.mu.
func (c *sshConn) locksFor(key string) lockNeed {
	if c.cfg.Lock == nil {
		return lockNeed{}
	}
	loginRoot := c.cfg.User == "root"
	asRoot := key == "root" || key == "" && loginRoot
	free := func(s *shellSession) bool { return s == nil || s.dead.Load() }
	var n lockNeed
	// A root shell names the login's home as ~login: a name that cannot
	// be written unquoted leaves the user lock to the login shell.
	if !loginRoot && (key == "" || asRoot && loginRE.MatchString(c.cfg.User)) {
		n.user = free(c.userLockShell)
	}
	if asRoot {
		n.root = free(c.lockShell)
	}
	return n
}

// needLock reports whether the next shell of key takes a lock.
// Callers hold c.mu.
func (c *sshConn) needLock(key string) bool { return c.locksFor(key) != lockNeed{} }

// lockText is the lock preamble for a new shell of key that takes n.
func (c *sshConn) lockText(key string, n lockNeed) string {
	var locks []string
	if n.user {
		home := `"$HOME"`
		if key != "" {
			home = homeGlob(c.cfg.User)
		}
		locks = append(locks, home+"/"+UserLockName)
	}
	if n.root {
		locks = append(locks, LockPath)
	}
	// The uploads in the login home are swept by whoever takes the
	// login's own lock.
	sweep := n.user || c.cfg.User == "root" && n.root
	return lockPreamble(c.cfg.Lock, locks, homeGlob(c.cfg.User), sweep)
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
	path, holder, _ := strings.Cut(string(rest), "\n")
	return &LockedError{Host: host, Path: path, Holder: strings.TrimSpace(holder)}
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

// lockLine is the run's part of a lock file's line; the holder's pid and
// start follow it.
func (l *RunLock) line() string {
	return fmt.Sprintf("run=%s user=%s start=%s", lockWord(l.ID), lockWord(l.User), l.Start.UTC().Format(time.RFC3339))
}

func (l *RunLock) tries() int {
	if l.Wait <= 0 {
		return 60
	}
	return l.Wait
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
// locks (shell words: paths, or ~name and "$HOME" paths), in order, for
// the session (see RunLock). When sweep is set, uploads in home older
// than the first lock are removed if this shell created it. A lock whose
// directory cannot be made, or whose file cannot be created where none
// exists, is not taken: the run goes on unlocked there.
//
// gk_st PID sets gk_s to PID's start time (field 22 of /proc/PID/stat,
// after the command name in parentheses) and the boot id, with builtins
// only.
func lockPreamble(l *RunLock, locks []string, home string, sweep bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gk_R=%s\ngk_W=%d\ngk_lk=\ngk_lp=\ngk_B=\nread -r gk_B </proc/sys/kernel/random/boot_id 2>/dev/null || gk_B=\n", shQuote(l.line()), l.tries())
	b.WriteString(`gk_st() { gk_s=; read -r gk_s </proc/"$1"/stat 2>/dev/null || return 1; gk_s=${gk_s##*) }; set -- $gk_s; shift 19; gk_s=$1${gk_B:+-$gk_B}; }
gk_own() { [ -n "$2" ] && read -r gk_l <"$1" 2>/dev/null && [ "$gk_l" = "$2" ]; }
gk_lock() {
gk_mine=
[ -d "${1%/*}" ] || command mkdir -m 0755 "${1%/*}" 2>/dev/null || return 0
gk_st $$ || return 0
gk_li="$gk_R pid=$$ pst=$gk_s"
gk_i=0
gk_e=0
gk_x=0
while :; do
set -C
{ printf '%s\n' "$gk_li" >"$1"; } 2>/dev/null
gk_lr=$?
set +C
if [ "$gk_lr" -eq 0 ]; then gk_mine=$gk_li; return 0; fi
gk_h=
read -r gk_h <"$1" 2>/dev/null
case $gk_h in
"$gk_R "*) return 0;;
*" pid="*" pst="*)
gk_lq=${gk_h##* pid=}; gk_hs=${gk_lq##* pst=}; gk_lq=${gk_lq%% *}
if ! gk_st "$gk_lq" || [ "$gk_s" != "$gk_hs" ]; then
gk_l=; read -r gk_l <"$1" 2>/dev/null
if [ "$gk_l" = "$gk_h" ]; then rm -f -- "$1"; fi
continue
fi
gk_e=0;;
*)
# No file after a failed create, twice: it cannot be created here
# (a read-only home).
if [ ! -e "$1" ]; then gk_x=$((gk_x+1)); if [ "$gk_x" -ge 2 ]; then return 0; fi; continue; fi
# Created but not written yet, or left empty by a shell killed in
# between: empty twice a second apart is dead.
gk_e=$((gk_e+1))
if [ "$gk_e" -ge 2 ]; then rm -f -- "$1"; gk_e=0; continue; fi;;
esac
gk_i=$((gk_i+1))
if [ "$gk_i" -gt "$gk_W" ]; then gk_lk=${gk_h:-unknown holder}; gk_lp=$1; return 1; fi
sleep 1
done
}
gk_ok=1
`)
	var unlock strings.Builder
	for i, p := range locks {
		fmt.Fprintf(&b, "gk_L%d=%s\ngk_l%d=\nif [ -n \"$gk_ok\" ]; then if gk_lock \"$gk_L%d\"; then gk_l%d=$gk_mine; else gk_ok=; fi; fi\n", i, p, i, i, i)
		fmt.Fprintf(&unlock, "if gk_own \"$gk_L%d\" \"$gk_l%d\"; then set -- \"$@\" \"$gk_L%d\"; fi; gk_l%d=; ", i, i, i, i)
	}
	// The session's end removes its locks and its temp directory with one
	// rm (a process is 10-30 ms on a busy host, and every run pays this),
	// or none when the session's helper runs (gk_rm).
	fmt.Fprintf(&b, "gk_unlock() { set --; %sif [ -n \"$gk_T\" ]; then set -- \"$@\" \"$gk_T\" \"$gk_T.u\" \"$gk_T.i\" \"$gk_T.o\" \"$gk_T.r\" \"$gk_T.hi\" \"$gk_T.ho\"; gk_T=; gk_D=; fi; if [ \"$#\" -gt 0 ]; then gk_rm \"$@\"; fi; }\nif [ -n \"$gk_ok\" ]; then\n", unlock.String())
	if sweep && len(locks) > 0 {
		fmt.Fprintf(&b, `if [ -n "$gk_l0" ]; then
set --
for gk_lf in %s/.gokube-upload-%s; do if [ -f "$gk_lf" ] && [ "$gk_lf" -ot "$gk_L0" ]; then set -- "$@" "$gk_lf"; fi; done
if [ "$#" -gt 0 ]; then rm -f -- "$@"; fi
fi
`, home, tempGlob)
	}
	// Refused: release what this shell took (the run fails here, and a
	// user lock held while waiting in vain for the root lock would hold up
	// that user's other runs), then answer every frame with the holder.
	fmt.Fprintf(&b, `:
else
gk_unlock
gk_go() { printf '%%s.s\n\n%%s %d\n' "$1" "$1"; printf '%%s%%s\n%%s\n' %s "$gk_lp" "$gk_lk" | base64; printf '%%s\n' "$1.e"; }
fi
`, lockedRC, shQuote(lockedPrefix))
	return b.String()
}

// tempGlob matches the random tag of gokube's temp file names (24 hex
// digits, newMarker), so no other file is ever taken for one.
const tempGlob = "[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]"

// staleTempsScript removes put temp files older than the run lock of the
// user the put runs as in the destination's directory ($gk_d of
// putScript): the lock is newer than any temp file of a run that is over,
// and older than every temp file of the run that holds it. Root (the one
// user who can write /run/gokube) goes by the root lock, any other user by
// its per-user lock in its $HOME; builtins only.
const staleTempsScript = `gk_K=` + LockPath + `; [ -w "${gk_K%/*}" ] || gk_K=$HOME/` + UserLockName + `
if [ -f "$gk_K" ]; then for gk_f in "${gk_d:-/}"/.gokube.` + tempGlob + `; do if [ -f "$gk_f" ] && [ "$gk_f" -ot "$gk_K" ]; then rm -f -- "$gk_f"; fi; done; fi
`
