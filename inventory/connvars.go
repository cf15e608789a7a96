package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ConnVars are a host's connection variables, parsed. gokube_host,
// gokube_port and gokube_user alias ansible_host, ansible_port and
// ansible_user; when both are set the gokube name wins, so a gokube-specific
// override can sit beside an unchanged Ansible inventory.
type ConnVars struct {
	Addr           string // gokube_host, ansible_host, ansible_ssh_host; default the host name
	Port           int    // gokube_port, ansible_port, ansible_ssh_port; 0 when unset
	User           string // gokube_user, ansible_user, ansible_ssh_user
	KeyFile        string // ansible_ssh_private_key_file, ansible_private_key_file ("~/" expanded)
	Password       string // ansible_password, ansible_ssh_pass, ansible_ssh_password
	Become         *bool  // ansible_become; nil when unset
	BecomeUser     string // ansible_become_user
	BecomePassword string // ansible_become_password, ansible_become_pass
	Connection     string // ansible_connection: "ssh" (also for smart, paramiko, unset) or "local"
	ProxyJump      *Jump  // from ansible_ssh_common_args / ansible_ssh_extra_args; nil when none
	KnownHostsFile string // ansible_ssh_known_hosts_file (gokube extension, "~/" expanded)
}

// Jump is the bastion a host is reached through.
type Jump struct {
	User string // "" when not given
	Addr string
	Port int // 0 when not given
}

// ConnVars returns the host's parsed connection variables. An invalid value
// leaves its field zero; CheckConnVars reports it. Load already rejects
// invalid literal values, so only vars changed or templated later can be
// invalid here.
func (h *Host) ConnVars() ConnVars {
	c, _ := parseConnVars(h.Name, h.Vars, false)
	return c
}

// CheckConnVars is ConnVars that also reports invalid values (a port that
// is not a number, an unsupported connection type, a ProxyCommand gokube
// cannot turn into a jump host, ...).
func (h *Host) CheckConnVars() (ConnVars, error) { return CheckConnVarsOf(h.Name, h.Vars) }

// CheckConnVarsOf is CheckConnVars for host name with the variables vars:
// the engine passes the host's variables after precedence (extra vars win)
// and with templated values rendered.
func CheckConnVarsOf(name string, vars map[string]any) (ConnVars, error) {
	c, kerrs := parseConnVars(name, vars, false)
	if len(kerrs) == 0 {
		return c, nil
	}
	errs := make([]error, len(kerrs))
	for i, ke := range kerrs {
		errs[i] = fmt.Errorf("host %s: %s", name, ke.msg)
	}
	return c, errors.Join(errs...)
}

// ConnVarGroups lists the connection variables, each group one setting
// under its names (the first name wins when several are set).
func ConnVarGroups() [][]string {
	return [][]string{
		{"gokube_host", "ansible_host", "ansible_ssh_host"},
		{"gokube_port", "ansible_port", "ansible_ssh_port"},
		{"gokube_user", "ansible_user", "ansible_ssh_user"},
		{"ansible_ssh_private_key_file", "ansible_private_key_file"},
		{"ansible_password", "ansible_ssh_pass", "ansible_ssh_password"},
		{"ansible_become"},
		{"ansible_become_user"},
		{"ansible_become_password", "ansible_become_pass"},
		{"ansible_connection"},
		{"ansible_ssh_common_args"},
		{"ansible_ssh_extra_args"},
		{"ansible_ssh_known_hosts_file"},
	}
}

type keyErr struct {
	key string
	msg string
}

func parseConnVars(name string, vars map[string]any, skipTemplates bool) (ConnVars, []keyErr) {
	var errs []keyErr
	first := func(keys ...string) (string, any, bool) {
		for _, k := range keys {
			if v, ok := vars[k]; ok && v != nil {
				return k, v, true
			}
		}
		return "", nil, false
	}
	str := func(keys ...string) string {
		_, v, _ := first(keys...)
		return toString(v)
	}
	templated := func(v any) bool {
		s, ok := v.(string)
		return ok && skipTemplates && isTemplate(s)
	}
	c := ConnVars{Addr: name, Connection: "ssh"}
	if a := str("gokube_host", "ansible_host", "ansible_ssh_host"); a != "" {
		c.Addr = a
	}
	if k, v, ok := first("gokube_port", "ansible_port", "ansible_ssh_port"); ok && !templated(v) {
		if n, ok := toInt(v); ok && n > 0 && n <= 65535 {
			c.Port = n
		} else {
			errs = append(errs, keyErr{k, fmt.Sprintf("%s: %q is not a port number (1-65535)", k, toString(v))})
		}
	}
	c.User = str("gokube_user", "ansible_user", "ansible_ssh_user")
	c.KeyFile = expandHome(str("ansible_ssh_private_key_file", "ansible_private_key_file"))
	c.Password = str("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
	if k, v, ok := first("ansible_become"); ok && !templated(v) {
		if b, ok := parseBool(v); ok {
			c.Become = &b
		} else {
			errs = append(errs, keyErr{k, fmt.Sprintf("%s: %q is not a boolean", k, toString(v))})
		}
	}
	c.BecomeUser = str("ansible_become_user")
	c.BecomePassword = str("ansible_become_password", "ansible_become_pass")
	if k, v, ok := first("ansible_connection"); ok && !templated(v) {
		switch s := strings.ToLower(toString(v)); s {
		case "", "ssh", "smart", "paramiko", "paramiko_ssh":
			c.Connection = "ssh"
		case "local":
			c.Connection = "local"
		default:
			c.Connection = s
			errs = append(errs, keyErr{k, fmt.Sprintf("%s: %q is not supported (gokube knows ssh and local)", k, s)})
		}
	}
	for _, k := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
		v, ok := vars[k]
		if !ok || v == nil || templated(v) {
			continue
		}
		j, err := parseSSHArgs(toString(v))
		if err != nil {
			errs = append(errs, keyErr{k, fmt.Sprintf("%s: %v", k, err)})
			continue
		}
		if j != nil && c.ProxyJump == nil {
			c.ProxyJump = j
		}
	}
	c.KnownHostsFile = expandHome(str("ansible_ssh_known_hosts_file"))
	return c, errs
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// ParseSSHArgs finds the bastion in ssh arguments the way inventories'
// ansible_ssh_common_args are read (ansible.cfg's ssh_args uses it too):
// -J spec, -o ProxyJump=spec, or a ProxyCommand of the ssh -W form. nil
// when there is none.
func ParseSSHArgs(args string) (*Jump, error) { return parseSSHArgs(args) }

// sshArgFlags are ssh options that take an argument.
const sshArgFlags = "BbcDEeFIiJLlmOopQRSWw"

// parseSSHArgs finds a bastion in ssh arguments: -J spec, -o ProxyJump=spec,
// or -o ProxyCommand="ssh ... -W %h:%p [user@]bastion". Other options are
// none of gokube's business and are ignored.
func parseSSHArgs(args string) (*Jump, error) {
	toks, err := shlexSplit(args)
	if err != nil {
		return nil, err
	}
	var jump *Jump
	set := func(j *Jump, err error) error {
		if err != nil {
			return err
		}
		if jump == nil {
			jump = j
		}
		return nil
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i].text
		var opt string
		switch {
		case t == "-J" || t == "-o":
			if i+1 >= len(toks) {
				return nil, fmt.Errorf("%s needs an argument", t)
			}
			i++
			if t == "-J" {
				if err := set(parseJumpSpec(toks[i].text)); err != nil {
					return nil, err
				}
				continue
			}
			opt = toks[i].text
		case strings.HasPrefix(t, "-J"):
			if err := set(parseJumpSpec(t[2:])); err != nil {
				return nil, err
			}
			continue
		case strings.HasPrefix(t, "-o"):
			opt = t[2:]
		default:
			continue
		}
		key, val := splitSSHOption(opt)
		switch strings.ToLower(key) {
		case "proxyjump":
			if strings.EqualFold(val, "none") {
				continue
			}
			if err := set(parseJumpSpec(val)); err != nil {
				return nil, err
			}
		case "proxycommand":
			if strings.EqualFold(val, "none") {
				continue
			}
			if err := set(parseProxyCommand(val)); err != nil {
				return nil, err
			}
		}
	}
	return jump, nil
}

// splitSSHOption splits "Key=value" or "Key value" as ssh_config does.
func splitSSHOption(opt string) (string, string) {
	opt = strings.TrimSpace(opt)
	i := strings.IndexAny(opt, "= \t")
	if i < 0 {
		return opt, ""
	}
	return opt[:i], strings.TrimSpace(strings.TrimLeft(opt[i:], "= \t"))
}

func parseJumpSpec(spec string) (*Jump, error) {
	spec = strings.TrimSpace(spec)
	if strings.Contains(spec, ",") {
		return nil, fmt.Errorf("ProxyJump %q: chains of jump hosts are not supported; use one bastion", spec)
	}
	spec = strings.TrimPrefix(spec, "ssh://")
	j := &Jump{}
	if at := strings.LastIndexByte(spec, '@'); at >= 0 {
		j.User, spec = spec[:at], spec[at+1:]
	}
	host, port := spec, ""
	if strings.HasPrefix(spec, "[") {
		end := strings.IndexByte(spec, ']')
		if end < 0 {
			return nil, fmt.Errorf("ProxyJump %q: missing ]", spec)
		}
		host, port = spec[1:end], strings.TrimPrefix(spec[end+1:], ":")
	} else if strings.Count(spec, ":") == 1 {
		host, port, _ = strings.Cut(spec, ":")
	}
	if host == "" {
		return nil, fmt.Errorf("ProxyJump %q: no host", spec)
	}
	j.Addr = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("ProxyJump %q: bad port %q", spec, port)
		}
		j.Port = n
	}
	return j, nil
}

// parseProxyCommand understands the bastion idioms "ssh [opts] -W %h:%p
// [user@]bastion" and "ssh [opts] [user@]bastion nc %h %p"; gokube connects
// through the bastion itself instead of running the command.
func parseProxyCommand(cmd string) (*Jump, error) {
	toks, err := shlexSplit(cmd)
	if err != nil {
		return nil, fmt.Errorf("ProxyCommand %q: %w", cmd, err)
	}
	if len(toks) == 0 || filepath.Base(toks[0].text) != "ssh" {
		return nil, fmt.Errorf("ProxyCommand %q: only \"ssh -W %%h:%%p [user@]bastion\" is supported", cmd)
	}
	j := &Jump{}
	forwards := false
	var rest []string
	for i := 1; i < len(toks); i++ {
		t := toks[i].text
		if len(t) < 2 || t[0] != '-' || len(rest) > 0 {
			rest = append(rest, t)
			continue
		}
		flag := t[1]
		if !strings.ContainsRune(sshArgFlags, rune(flag)) {
			continue // -q, -4, -A, -T ...
		}
		val := t[2:]
		if val == "" {
			if i+1 >= len(toks) {
				return nil, fmt.Errorf("ProxyCommand %q: -%c needs an argument", cmd, flag)
			}
			i++
			val = toks[i].text
		}
		switch flag {
		case 'W':
			forwards = true
		case 'p':
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("ProxyCommand %q: bad port %q", cmd, val)
			}
			j.Port = n
		case 'l':
			j.User = val
		case 'J':
			return nil, fmt.Errorf("ProxyCommand %q: nested jump hosts are not supported", cmd)
		case 'o':
			k, v := splitSSHOption(val)
			switch strings.ToLower(k) {
			case "port":
				if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 65535 {
					j.Port = n
				}
			case "user":
				j.User = v
			}
		}
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("ProxyCommand %q: no bastion host", cmd)
	}
	netcat := len(rest) == 4 && (rest[1] == "nc" || rest[1] == "netcat") && rest[2] == "%h" && rest[3] == "%p"
	switch {
	case len(rest) == 1 && !forwards:
		return nil, fmt.Errorf("ProxyCommand %q: the bastion command must forward with -W %%h:%%p", cmd)
	case len(rest) > 1 && !netcat:
		return nil, fmt.Errorf("ProxyCommand %q: only \"ssh -W %%h:%%p [user@]bastion\" or \"ssh [user@]bastion nc %%h %%p\" is supported", cmd)
	}
	dest := rest[0]
	if at := strings.LastIndexByte(dest, '@'); at >= 0 {
		j.User, dest = dest[:at], dest[at+1:]
	}
	if dest == "" {
		return nil, fmt.Errorf("ProxyCommand %q: no bastion host", cmd)
	}
	j.Addr = dest
	return j, nil
}
