// Package config reads an Ansible project's ansible.cfg, so an operator's
// existing project directory runs under gokube with the same inventory,
// user, key, forks and become. Only the settings gokube acts on are read;
// the rest of the file belongs to Ansible and is ignored (listed in
// Config.Ignored, which the CLI prints at -v).
package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gokube/inventory"
)

// Config is what an ansible.cfg says, parsed and checked. Zero values mean
// "not set"; pointers distinguish an explicit false.
type Config struct {
	// Path is the file read ("" when none was found); Why says which rule
	// of the search found it (ANSIBLE_CONFIG, ./ansible.cfg, ...).
	Path string
	Why  string

	Inventory      []string // [defaults] inventory (paths, comma-separated)
	RemoteUser     string   // [defaults] remote_user
	PrivateKeyFile string   // [defaults] private_key_file
	Forks          int      // [defaults] forks
	RolesPath      []string // [defaults] roles_path (colon-separated)
	Timeout        time.Duration
	// HostKeyChecking is read only to tell the operator that gokube keeps
	// checking host keys (unknown keys need --accept-new-host-keys).
	HostKeyChecking    *bool
	RetryFilesEnabled  *bool
	RetryFilesSavePath string

	Become        *bool  // [privilege_escalation] become
	BecomeUser    string // [privilege_escalation] become_user
	BecomeAskPass *bool  // [privilege_escalation] become_ask_pass

	SSHArgs   string          // [ssh_connection] ssh_args, as written
	ProxyJump *inventory.Jump // the bastion in ssh_args; other ssh options are ignored

	// Sources maps each setting read ("defaults.forks") to "file:line".
	Sources map[string]string
	// Ignored lists "file:line: [section] key" for every key gokube does
	// not act on.
	Ignored []string
}

// Env is what Find looks at, so tests need not change the process.
type Env struct {
	Getenv func(string) string
	Cwd    string
	Home   string
}

// DefaultEnv is the process's environment, working directory and home.
func DefaultEnv() Env {
	cwd, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	return Env{Getenv: os.Getenv, Cwd: cwd, Home: home}
}

// Find returns the ansible.cfg Ansible would read, in Ansible's order:
// $ANSIBLE_CONFIG (a file, or a directory holding ansible.cfg),
// ./ansible.cfg, ~/.ansible.cfg, /etc/ansible/ansible.cfg. The first that
// exists wins; files are never merged. Like Ansible, ./ansible.cfg is
// skipped when the working directory is world-writable (anyone could plant
// one); warning says so. path is "" when there is none.
func Find(env Env) (path, why, warning string, err error) {
	if p := env.Getenv("ANSIBLE_CONFIG"); p != "" {
		p = expandPath(p, env.Home, env.Cwd)
		fi, err := os.Stat(p)
		if err != nil {
			return "", "", "", fmt.Errorf("ANSIBLE_CONFIG=%s: %w", p, err)
		}
		if fi.IsDir() {
			p = filepath.Join(p, "ansible.cfg")
			if _, err := os.Stat(p); err != nil {
				return "", "", "", fmt.Errorf("ANSIBLE_CONFIG names a directory without ansible.cfg: %w", err)
			}
		}
		return p, "$ANSIBLE_CONFIG", "", nil
	}
	if env.Cwd != "" {
		p := filepath.Join(env.Cwd, "ansible.cfg")
		if _, err := os.Stat(p); err == nil {
			if fi, err := os.Stat(env.Cwd); err == nil && fi.Mode().Perm()&0o002 != 0 {
				warning = fmt.Sprintf("%s ignored: the working directory is world-writable (Ansible ignores it too)", p)
			} else {
				return p, "./ansible.cfg", "", nil
			}
		}
	}
	if env.Home != "" {
		p := filepath.Join(env.Home, ".ansible.cfg")
		if _, err := os.Stat(p); err == nil {
			return p, "~/.ansible.cfg", warning, nil
		}
	}
	if _, err := os.Stat("/etc/ansible/ansible.cfg"); err == nil {
		return "/etc/ansible/ansible.cfg", "/etc/ansible/ansible.cfg", warning, nil
	}
	return "", "", warning, nil
}

// Load finds and parses the ansible.cfg of env (an empty Config when there
// is none), then applies the ANSIBLE_* variables of the settings gokube
// uses, which win over the file as in Ansible. A bad value is an error
// naming the file, line and key, or the variable.
func Load(env Env) (*Config, string, error) {
	path, why, warning, err := Find(env)
	if err != nil {
		return nil, warning, err
	}
	if path == "" {
		c := &Config{Sources: map[string]string{}}
		return c, warning, c.applyEnv(env)
	}
	c, err := Parse(path, env.Home)
	if err != nil {
		return nil, warning, err
	}
	c.Why = why
	return c, warning, c.applyEnv(env)
}

// envVars are the ANSIBLE_* variables of the settings gokube uses, with
// the section and key each stands for.
func envVars() [][3]string {
	return [][3]string{
		{"ANSIBLE_INVENTORY", "defaults", "inventory"},
		{"ANSIBLE_REMOTE_USER", "defaults", "remote_user"},
		{"ANSIBLE_PRIVATE_KEY_FILE", "defaults", "private_key_file"},
		{"ANSIBLE_FORKS", "defaults", "forks"},
		{"ANSIBLE_ROLES_PATH", "defaults", "roles_path"},
		{"ANSIBLE_TIMEOUT", "defaults", "timeout"},
		{"ANSIBLE_HOST_KEY_CHECKING", "defaults", "host_key_checking"},
		{"ANSIBLE_RETRY_FILES_ENABLED", "defaults", "retry_files_enabled"},
		{"ANSIBLE_RETRY_FILES_SAVE_PATH", "defaults", "retry_files_save_path"},
		{"ANSIBLE_BECOME", "privilege_escalation", "become"},
		{"ANSIBLE_BECOME_USER", "privilege_escalation", "become_user"},
		{"ANSIBLE_BECOME_ASK_PASS", "privilege_escalation", "become_ask_pass"},
		{"ANSIBLE_BECOME_METHOD", "privilege_escalation", "become_method"},
		{"ANSIBLE_SSH_ARGS", "ssh_connection", "ssh_args"},
	}
}

// applyEnv applies the ANSIBLE_* variables that are set; their relative
// paths are relative to the working directory.
func (c *Config) applyEnv(env Env) error {
	var errs []error
	for _, v := range envVars() {
		val := env.Getenv(v[0])
		if val == "" {
			continue
		}
		e := &entry{section: v[1], key: v[2], value: val, from: "$" + v[0]}
		if err := c.set(e, env.Cwd, env.Home); err != nil {
			errs = append(errs, fmt.Errorf("$%s: %w", v[0], err))
		}
	}
	return errors.Join(errs...)
}

// entry is one setting: a key = value of the file, or an ANSIBLE_*
// environment variable. from is where it came from (file:line, $VAR).
type entry struct {
	section, key, value string
	line                int
	from                string
}

// Parse reads one ansible.cfg. The syntax is Python's configparser as
// Ansible uses it: [section], key = value or key: value, keys
// case-insensitive, # and ; comment lines, ; inline comments after a
// space, indented continuation lines; a key given twice in a section is an
// error, as in Ansible. Relative paths are relative to the file's
// directory; ~ and $VARS are expanded, as Ansible does for path settings.
func Parse(path, home string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var entries []*entry
	section := ""
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if len(entries) == 0 || entries[len(entries)-1].section != section {
				return nil, fmt.Errorf("%s:%d: unexpected indented line", path, n)
			}
			e := entries[len(entries)-1]
			e.value = strings.TrimSpace(e.value + "\n" + stripInline(trimmed))
			continue
		}
		if trimmed[0] == '[' {
			end := strings.IndexByte(trimmed, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: section header without ]", path, n)
			}
			section = strings.TrimSpace(trimmed[1:end])
			continue
		}
		i := strings.IndexAny(trimmed, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: want key = value, got %q", path, n, trimmed)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: %q comes before any [section]", path, n, trimmed)
		}
		key := strings.ToLower(strings.TrimSpace(trimmed[:i]))
		if prev, dup := seen[section+"."+key]; dup {
			return nil, fmt.Errorf("%s:%d: [%s] %s already set on line %d", path, n, section, key, prev)
		}
		seen[section+"."+key] = n
		entries = append(entries, &entry{section: section, key: key, value: stripInline(strings.TrimSpace(trimmed[i+1:])), line: n, from: fmt.Sprintf("%s:%d", path, n)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Config{Path: path, Sources: map[string]string{}}
	dir := filepath.Dir(path)
	var errs []error
	for _, e := range entries {
		at := fmt.Sprintf("%s:%d", path, e.line)
		if err := c.set(e, dir, home); err != nil {
			errs = append(errs, fmt.Errorf("%s: [%s] %s: %w", at, e.section, e.key, err))
			continue
		}
		if _, ok := c.Sources[e.section+"."+e.key]; !ok {
			c.Ignored = append(c.Ignored, fmt.Sprintf("%s: [%s] %s", at, e.section, e.key))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// stripInline drops a "; comment" (configparser's inline comment prefix
// needs whitespace before it, so a ; inside a value stays).
func stripInline(v string) string {
	for i := 1; i < len(v); i++ {
		if v[i] == ';' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}

// set applies one entry; keys gokube does not know are left to Parse to
// list as ignored.
func (c *Config) set(e *entry, dir, home string) error {
	name := e.section + "." + e.key
	v := e.value
	switch name {
	case "defaults.inventory", "defaults.hostfile":
		c.Inventory = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Inventory = append(c.Inventory, expandPath(p, home, dir))
			}
		}
	case "defaults.remote_user":
		c.RemoteUser = v
	case "defaults.private_key_file":
		c.PrivateKeyFile = expandPath(v, home, dir)
	case "defaults.forks":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", v)
		}
		c.Forks = n
	case "defaults.roles_path":
		c.RolesPath = nil
		for _, p := range strings.Split(v, string(os.PathListSeparator)) {
			if p = strings.TrimSpace(p); p != "" {
				c.RolesPath = append(c.RolesPath, expandPath(p, home, dir))
			}
		}
	case "defaults.timeout":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive number of seconds", v)
		}
		c.Timeout = time.Duration(n) * time.Second
	case "defaults.host_key_checking":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.HostKeyChecking = &b
	case "defaults.retry_files_enabled":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.RetryFilesEnabled = &b
	case "defaults.retry_files_save_path":
		c.RetryFilesSavePath = expandPath(v, home, dir)
	case "privilege_escalation.become":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.Become = &b
	case "privilege_escalation.become_user":
		c.BecomeUser = v
	case "privilege_escalation.become_ask_pass":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.BecomeAskPass = &b
	case "privilege_escalation.become_method":
		if v != "sudo" {
			return fmt.Errorf("%q: gokube becomes with sudo only", v)
		}
	case "ssh_connection.ssh_args":
		j, err := inventory.ParseSSHArgs(v)
		if err != nil {
			return err
		}
		c.SSHArgs, c.ProxyJump = v, j
	default:
		return nil
	}
	c.Sources[name] = e.from
	return nil
}

// parseBool reads Ansible's booleans.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "on", "1", "true", "y", "t":
		return true, nil
	case "no", "off", "0", "false", "n", "f":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (yes/no/true/false)", v)
}

// expandPath expands $VARS and ~ and makes a relative path relative to dir.
func expandPath(p, home, dir string) string {
	p = os.ExpandEnv(p)
	if p == "~" {
		p = home
	} else if rest, ok := strings.CutPrefix(p, "~/"); ok && home != "" {
		p = filepath.Join(home, rest)
	}
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}
