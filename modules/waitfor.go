package modules

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// waitFor polls on the host itself in one request: a small sh loop, with
// bash's /dev/tcp for ports (bash is essential on Debian; dash has no
// /dev/tcp) and ss for drained.
type waitFor struct{}

func (waitFor) Spec() Spec {
	return Spec{
		Doc: "Waits on the host (one request, the loop runs there) for a port to open, close or drain, or a file to appear, disappear or contain a regexp. Check mode does not wait.",
		Returns: map[string]string{
			"elapsed": "seconds waited",
			"path":    "the path",
			"port":    "the port",
			"state":   "the state waited for",
		},
		Args: map[string]Arg{
			"host":            {Type: String, Doc: "Address to test the port on, as seen from the host.", Default: "127.0.0.1"},
			"port":            {Type: Int, Kind: Port, Doc: "TCP port to wait for."},
			"path":            {Type: String, Doc: "File to wait for."},
			"state":           {Type: String, Choices: []string{"started", "stopped", "present", "absent", "drained"}, Doc: "started/present: open or exists; stopped/absent: closed or gone; drained: no active connections on port.", Default: "started"},
			"search_regex":    {Type: String, Kind: Regexp, Doc: "With path: wait until the file contains this regexp."},
			"timeout":         {Type: Int, Doc: "Seconds to wait before failing.", Default: "300"},
			"delay":           {Type: Int, Doc: "Seconds to wait before the first check.", Default: "0"},
			"sleep":           {Type: Int, Doc: "Seconds between checks.", Default: "1"},
			"connect_timeout": {Type: Int, Doc: "Seconds one connection attempt may take.", Default: "5"},
			"msg":             {Type: String, Doc: "Message when the wait fails."},
		},
		Exclusive: [][]string{{"port", "path"}},
	}
}

// condition returns a shell test that is true when the wait is over.
func (waitFor) condition(a cargs) (string, string, error) {
	state := a.str("state")
	if state == "" {
		state = "started"
	}
	re := a.str("search_regex")
	if p := a.str("path"); p != "" {
		switch state {
		case "started", "present":
			if re != "" {
				return "grep -Eq -- " + shq(re) + " " + shq(p) + " 2>/dev/null", "search_regex in " + p, nil
			}
			return "[ -e " + shq(p) + " ]", p, nil
		case "absent", "stopped":
			return "[ ! -e " + shq(p) + " ]", p + " absent", nil
		}
		return "", "", a.err("state", "%s needs a port", state)
	}
	if !a.has("port") {
		if state == "absent" || state == "present" {
			return "", "", a.err("path", "required with state=%s", state)
		}
		return "", "", nil
	}
	port := a.integer("port", 0)
	if port <= 0 || port > 65535 {
		return "", "", a.err("port", "%d is not a TCP port", port)
	}
	host := a.str("host")
	if host == "" {
		host = "127.0.0.1"
	}
	if !regexp.MustCompile(`^[A-Za-z0-9.:_\[\]-]+$`).MatchString(host) {
		return "", "", a.err("host", "%q is not a host name or address", host)
	}
	host = strings.Trim(host, "[]")
	ct := a.integer("connect_timeout", 5)
	what := host + ":" + strconv.Itoa(port)
	dial := fmt.Sprintf("timeout %d bash -c %s 2>/dev/null", ct, shq(fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", host, port)))
	switch state {
	case "started", "present":
		if re != "" {
			read := fmt.Sprintf("timeout %d bash -c %s 2>/dev/null | grep -Eq -- %s", ct,
				shq(fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && cat <&3", host, port)), shq(re))
			return read, what, nil
		}
		return dial, what, nil
	case "stopped", "absent":
		return "! " + dial, what + " closed", nil
	case "drained":
		// ss is checked first: without it the test would fail until the
		// timeout and blame the port.
		return fmt.Sprintf("{ command -v ss >/dev/null || { echo 'wait_for: state=drained needs ss (iproute2) on the host' >&2; exit %d; }; } && [ \"$(ss -Htn state established '( sport = :%d )' | wc -l)\" -eq 0 ]", waitNoTool, port), what + " drained", nil
	}
	return "", "", a.err("state", "unknown state %q", state)
}

// waitNoTool is the exit code of a wait that cannot be evaluated.
const waitNoTool = 3

func waitScript(cond string, timeout, delay, sleep int) string {
	if cond == "" {
		return fmt.Sprintf("sleep %d; echo elapsed=%d", timeout, timeout)
	}
	return fmt.Sprintf(`(s=$(date +%%s); end=$((s + %d))
sleep %d
while :; do
if %s; then echo elapsed=$(( $(date +%%s) - s )); exit 0; fi
if [ "$(date +%%s)" -ge "$end" ]; then echo elapsed=$(( $(date +%%s) - s )); exit 1; fi
sleep %d
done)`, timeout, delay, cond, sleep)
}

func (m waitFor) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("wait_for", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	cond, what, err := m.condition(a)
	if err != nil {
		return nil, err
	}
	timeout, delay, sleep := a.integer("timeout", 300), a.integer("delay", 0), a.integer("sleep", 1)
	if timeout < 0 || delay < 0 || sleep < 1 {
		return nil, a.err("timeout", "timeout and delay must be >= 0, sleep >= 1")
	}
	if env.Check {
		// What is awaited is usually started by an earlier task that check
		// mode did not run; look once instead of waiting for the timeout.
		if cond == "" {
			return &Result{Skipped: true, Msg: "would sleep " + strconv.Itoa(timeout) + "s"}, nil
		}
		timeout, delay = 0, 0
	}
	start := time.Now()
	r, err := run(ctx, env, waitScript(cond, timeout, delay, sleep), true)
	if err != nil {
		return nil, err
	}
	elapsed, _ := strconv.Atoi(parseKV(r.Stdout)["elapsed"])
	data := map[string]any{"elapsed": elapsed, "state": a.str("state")}
	if a.has("port") {
		data["port"] = a.integer("port", 0)
	}
	if a.has("path") {
		data["path"] = a.str("path")
	}
	if r.RC == 0 {
		return &Result{Msg: "ok after " + time.Since(start).Round(time.Millisecond).String(), Data: data}, nil
	}
	if r.RC == waitNoTool {
		return &Result{Failed: true, Msg: strings.TrimSpace(string(r.Stderr)), Data: data}, nil
	}
	if env.Check {
		return &Result{Skipped: true, Msg: "not yet: " + what + " (check mode does not wait)", Data: data}, nil
	}
	msg := a.str("msg")
	if msg == "" {
		msg = "Timeout when waiting for " + what
	}
	return &Result{Failed: true, Msg: msg, Data: data}, nil
}
