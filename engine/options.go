package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"gokube/connection"
	"gokube/internal/vault"
	"gokube/inventory"
	"gokube/modules"
)

// Options is one run of a playbook.
type Options struct {
	Inventory []string // inventory files (the first is used for inventory_dir)
	// Inv, when set, is used instead of loading Inventory (tests).
	Inv       *inventory.Inventory
	Playbook  string
	ExtraVars []string // "k=v k2=v2", "@file.yml", "@file.json", "{json}"
	Check     bool
	Diff      bool
	Limit     string
	Tags      []string
	SkipTags  []string
	Forks     int // default 50
	Verbosity int
	// StartAtTask skips every task before the first one of that name.
	StartAtTask string

	Become            bool
	BecomeUser        string
	BecomePassword    string
	User              string
	PrivateKey        string
	KnownHosts        string
	AcceptNewHostKeys bool
	ConnectTimeout    time.Duration

	Output      string    // "text" (default) or "json"
	Out         io.Writer // default os.Stdout
	Color       bool      // ANSI colours (the CLI sets it on a terminal)
	HideTimings bool      // leave durations out of the text output (golden tests)

	BundledRoles fs.FS
	// ConnFactory dials a host; tests inject fakes. vars are the host's
	// inventory variables. Nil dials SSH (or local for
	// ansible_connection=local).
	ConnFactory func(host string, vars map[string]any) (connection.Conn, error)
	Registry    *modules.Registry
	ArtifactDir string

	// RolesPath is searched for roles after roles/ beside the playbook and
	// before the bundled roles (ansible.cfg's roles_path).
	RolesPath []string
	// ProgressEvery is how often a task still running prints its progress
	// line (hosts, time, bytes on the wire); default 5s.
	ProgressEvery time.Duration
	// ProxyJump is the bastion of hosts whose inventory names none
	// (ansible.cfg's ssh_args).
	ProxyJump *inventory.Jump
	// LockWait is how many seconds a run waits for another run's lock on
	// a host before that host fails (default 60; see connection.RunLock).
	LockWait int
	// Vault holds the passwords of --vault-id / --vault-password-file:
	// Ansible Vault files and `!vault` values in the inventory's vars,
	// vars_files, role defaults and vars, include_vars and -e @file.
	Vault *vault.Keyring
}

// Load parses the playbook and inventory of opts without contacting hosts.
func Load(opts Options) (*Playbook, *inventory.Inventory, error) {
	inv := opts.Inv
	if inv == nil {
		if len(opts.Inventory) == 0 {
			return nil, nil, &UsageError{errors.New("no inventory given (-i)")}
		}
		if len(opts.Inventory) > 1 {
			return nil, nil, &UsageError{errors.New("only one -i is supported; put the inventory files in one directory and pass -i DIR")}
		}
		var err error
		inv, err = inventory.LoadWith(opts.Inventory[0], inventory.LoadOptions{Vault: opts.Vault})
		if err != nil {
			return nil, nil, &UsageError{err}
		}
	}
	if opts.Playbook == "" {
		return nil, inv, nil
	}
	reg := opts.Registry
	if reg == nil {
		reg = modules.NewRegistry()
	}
	// The playbook's errors and the -e values' are reported together.
	var errs errList
	pb, err := loadPlaybook(opts.Playbook, reg, opts.BundledRoles, opts.RolesPath, opts.Vault)
	errs.add(err)
	errs.add(CheckExtraVars(opts.ExtraVars, opts.Vault))
	if err := errs.err(); err != nil {
		return nil, nil, err
	}
	if opts.Inv == nil {
		if err := inv.AddVarsDir(pb.Dir); err != nil {
			return nil, nil, &UsageError{err}
		}
	}
	if err := checkAgainstInventory(pb, inv); err != nil {
		return nil, nil, err
	}
	return pb, inv, nil
}

// CheckExtraVars reports every -e value that does not parse and every
// template in them that does not (a Jinja habit included), each naming
// the -e value and key; --syntax-check runs it.
func CheckExtraVars(list []string, kr *vault.Keyring) error {
	var errs errList
	syn := newTemplateSyntax()
	for _, e := range list {
		m, err := ParseExtraVars([]string{e}, kr)
		if err != nil {
			errs.add(&LoadError{Pos: Pos{File: "-e"}, Msg: strings.TrimPrefix(err.Error(), "-e "), Err: err})
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			for _, s := range stringsOf(m[k]) {
				if !strings.Contains(s, "{{") {
					continue
				}
				if err := syn.check(s); err != nil {
					var te *TemplateError
					if errors.As(tmplError(Pos{}, "", err), &te) {
						errs.add(&LoadError{Pos: Pos{File: "-e " + k}, Msg: strings.TrimPrefix(te.Error(), te.Pos.String()+": "), Err: te})
					}
				}
			}
		}
	}
	return errs.err()
}

// stringsOf lists the strings inside a value, deep.
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringsOf(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, stringsOf(e)...)
		}
		return out
	}
	return nil
}

// ParseExtraVars reads -e values: k=v pairs, @file (YAML or JSON), or inline JSON/YAML.
func ParseExtraVars(list []string, kr *vault.Keyring) (map[string]any, error) {
	out := map[string]any{}
	for _, e := range list {
		e = strings.TrimSpace(e)
		switch {
		case strings.HasPrefix(e, "@"):
			b, err := os.ReadFile(e[1:])
			if err != nil {
				return nil, fmt.Errorf("-e %s: %w", e, err)
			}
			if vault.IsEncrypted(b) {
				if b, err = kr.Decrypt(b); err != nil {
					return nil, fmt.Errorf("-e %s: %w", e, err)
				}
			}
			var m map[string]any
			if err := yaml.Unmarshal(b, &m); err != nil {
				return nil, fmt.Errorf("-e %s: %w", e, err)
			}
			for k, v := range m {
				out[k] = normalize(v)
			}
		case strings.HasPrefix(e, "{"):
			var m map[string]any
			if err := json.Unmarshal([]byte(e), &m); err != nil {
				if err2 := yaml.Unmarshal([]byte(e), &m); err2 != nil {
					return nil, fmt.Errorf("-e %q: %w", e, err)
				}
			}
			for k, v := range m {
				out[k] = normalize(jsonNums(v))
			}
		default:
			toks, err := modules.SplitWords(e)
			if err != nil {
				return nil, fmt.Errorf("-e %q: %w", e, err)
			}
			for _, t := range toks {
				k, v, ok := strings.Cut(t, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("-e %q: want key=value, @file or JSON", t)
				}
				out[k] = v
			}
		}
	}
	return out, nil
}

// jsonNums turns whole float64s from JSON into ints so `-e '{"n": 3}'`
// behaves like YAML's 3.
func jsonNums(v any) any {
	switch t := v.(type) {
	case float64:
		if t == float64(int(t)) {
			return int(t)
		}
	case map[string]any:
		for k, x := range t {
			t[k] = jsonNums(x)
		}
	case []any:
		for i, x := range t {
			t[i] = jsonNums(x)
		}
	}
	return v
}
