package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"gokube/config"
	"gokube/engine"
	"gokube/internal/vault"
	"gokube/inventory"
	"gokube/roles"
	"gokube/timeline"
)

// addEngineCommands adds play, inventory and graph.
func addEngineCommands(root *cobra.Command) {
	root.AddCommand(newPlayCmd(), newInventoryCmd(), newGraphCmd(), newRenderCmd())
}

func asExit(err error, target *interface{ ExitCode() int }) bool {
	return errors.As(err, target)
}

type playFlags struct {
	inv         []string
	extra       []string
	limit       string
	tags        []string
	skipTags    []string
	check, diff bool
	become      bool
	becomeUser  string
	askPass     bool
	user        string
	key         string
	knownHosts  string
	acceptNew   bool
	forks       int
	verbose     int
	startAt     string
	output      string
	timeout     time.Duration
	listTasks   bool
	listHosts   bool
	syntax      bool
	artifacts   string
	retryFile   string
	retryDir    string // ansible.cfg's retry_files_save_path
	noRetry     bool
	lockWait    int
	vaultIDs    []string // --vault-id [LABEL@]FILE
	vaultFiles  []string // --vault-password-file FILE
	timeline    string
	rolesPath   []string        // ansible.cfg's roles_path
	proxyJump   *inventory.Jump // ansible.cfg's ssh_args
}

func newPlayCmd() *cobra.Command { return newPlayCmdFlags(&playFlags{}) }

// newPlayCmdFlags is newPlayCmd filling f (tests read what a run used).
func newPlayCmdFlags(f *playFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "play PLAYBOOK",
		Short: "run a playbook on the inventory's hosts",
		Long: `Run an Ansible-style playbook over SSH: one connection per host, hosts in
parallel (--forks), probes of many tasks batched in one round trip.

Exit codes: 0 all ok, 2 a host failed, 4 a host was unreachable (even if
another failed), 99 interrupted, 1 usage or
parse error (bad flag, inventory, playbook, template syntax).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPlay(cmd, f, args[0]) },
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.inv, "inventory", "i", nil, "inventory file or directory of them (INI or YAML); group_vars/ and host_vars/ beside it are read")
	fl.StringArrayVarP(&f.extra, "extra-vars", "e", nil, "extra variables, highest precedence: k=v, @file.yml, @file.json or '{json}' (repeatable)")
	fl.StringVarP(&f.limit, "limit", "l", "", "further limit hosts with a pattern (a:b, a:&b, a:!b, wildcards, @file)")
	fl.StringSliceVarP(&f.tags, "tags", "t", nil, "run only tasks with these tags (comma-separated; all, tagged, untagged)")
	fl.StringSliceVar(&f.skipTags, "skip-tags", nil, "skip tasks with these tags")
	fl.BoolVarP(&f.check, "check", "C", false, "check mode: predict changes, change nothing on the hosts")
	fl.BoolVarP(&f.diff, "diff", "D", false, "show the diffs of changed files and templates")
	fl.BoolVarP(&f.become, "become", "b", false, "run tasks with sudo (become) unless a play or task says otherwise")
	fl.StringVar(&f.becomeUser, "become-user", "", "user to become (default root)")
	fl.BoolVarP(&f.askPass, "ask-become-pass", "K", false, "ask for the sudo password on the terminal")
	fl.StringVarP(&f.user, "user", "u", "", "SSH user when the inventory sets none (ansible_user wins)")
	fl.StringVar(&f.key, "private-key", "", "SSH private key file when the inventory sets none")
	fl.StringVar(&f.knownHosts, "known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
	fl.BoolVar(&f.acceptNew, "accept-new-host-keys", false, "add unknown host keys to known_hosts (changed keys are always refused)")
	fl.IntVarP(&f.forks, "forks", "f", 50, "hosts that run a task at the same time")
	fl.CountVarP(&f.verbose, "verbose", "v", "more output (-v shows messages and round trips per host, -vv, -vvv)")
	fl.StringVar(&f.startAt, "start-at-task", "", "start the playbook at the first task of this name")
	fl.StringVar(&f.output, "output", "text", "output format: text or json")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "SSH connect timeout")
	fl.BoolVar(&f.listTasks, "list-tasks", false, "list the tasks that would run, without connecting")
	fl.BoolVar(&f.listHosts, "list-hosts", false, "list the hosts each play would run on, without connecting")
	fl.BoolVar(&f.syntax, "syntax-check", false, "parse the playbook and validate every task's arguments, without connecting")
	fl.StringVar(&f.artifacts, "artifact-dir", "", "control machine's artifact cache for modules that upload binaries")
	fl.StringVar(&f.retryFile, "retry-file", "", "where to list failed and unreachable hosts for --limit @FILE (default PLAYBOOK.retry beside the playbook)")
	fl.BoolVar(&f.noRetry, "no-retry-file", false, "do not write a retry file")
	fl.StringArrayVar(&f.vaultIDs, "vault-id", nil, "Ansible Vault password as LABEL@FILE or FILE: vault files and !vault values in vars are decrypted (repeatable)")
	fl.StringArrayVar(&f.vaultFiles, "vault-password-file", nil, "file holding an Ansible Vault password (repeatable; default $ANSIBLE_VAULT_PASSWORD_FILE)")
	fl.IntVar(&f.lockWait, "lock-wait", 60, "seconds a run waits for another gokube run's lock on a host (/run/gokube/lock, or ~/.gokube-lock of a login that is not root) before that host fails")
	fl.StringVar(&f.timeline, "timeline", "", "write a picture of the run to FILE.html or FILE.svg: one row per host, one bar per task (outcome, round trips, bytes), slowest marked")
	return cmd
}

func runPlay(cmd *cobra.Command, f *playFlags, playbook string) error {
	if f.output != "text" && f.output != "json" {
		return &engine.UsageError{Err: fmt.Errorf("--output: %q is not text or json", f.output)}
	}
	if err := applyAnsibleCfg(cmd, f, cmd.ErrOrStderr()); err != nil {
		return err
	}
	if len(f.vaultIDs)+len(f.vaultFiles) == 0 {
		if env := os.Getenv("ANSIBLE_VAULT_PASSWORD_FILE"); env != "" {
			f.vaultFiles = []string{env}
		}
	}
	kr, err := vault.Load(f.vaultIDs, f.vaultFiles)
	if err != nil {
		return &engine.UsageError{Err: err}
	}
	opts := engine.Options{
		Vault:     kr,
		Inventory: f.inv, Playbook: playbook, ExtraVars: f.extra, Check: f.check, Diff: f.diff,
		Limit: f.limit, Tags: f.tags, SkipTags: f.skipTags, Forks: f.forks, Verbosity: f.verbose,
		StartAtTask: f.startAt, Become: f.become, BecomeUser: f.becomeUser, User: f.user,
		PrivateKey: f.key, KnownHosts: f.knownHosts, AcceptNewHostKeys: f.acceptNew,
		ConnectTimeout: f.timeout, Output: f.output, Out: cmd.OutOrStdout(), BundledRoles: roles.FS,
		ArtifactDir: f.artifacts, RolesPath: f.rolesPath, ProxyJump: f.proxyJump, LockWait: f.lockWait,
	}
	if f.listTasks || f.listHosts || f.syntax {
		var pb *engine.Playbook
		var inv *inventory.Inventory
		var err error
		if len(f.inv) == 0 && !f.listHosts {
			// Parsing needs no inventory; -e values are checked with it.
			pb, err = engine.LoadPlaybookVault(playbook, nil, roles.FS, f.rolesPath, kr)
			err = engine.JoinLoadErrors(err, engine.CheckExtraVars(f.extra, kr))
		} else {
			pb, inv, err = engine.Load(opts)
		}
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if inv != nil {
			// What a run would warn about (a group_vars file matching no
			// group) is shown before anything runs too.
			for _, warn := range inv.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "[WARNING]: %s\n", warn)
			}
		}
		if f.output == "json" && (f.listHosts || f.listTasks) {
			return engine.ListJSON(w, playbook, pb, inv, f.listHosts, f.listTasks, f.limit, f.tags, f.skipTags)
		}
		if f.syntax {
			fmt.Fprintf(w, "playbook: %s\n", playbook)
		}
		if f.listHosts {
			if err := engine.ListHosts(w, pb, inv, f.limit); err != nil {
				return err
			}
		}
		if f.listTasks {
			engine.ListTasks(w, pb, f.tags, f.skipTags)
		}
		return nil
	}
	if fd := int(os.Stdout.Fd()); f.output == "text" && term.IsTerminal(fd) && os.Getenv("NO_COLOR") == "" {
		opts.Color = true
	}
	if f.askPass {
		fmt.Fprint(os.Stderr, "BECOME password: ")
		pw, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return &engine.UsageError{Err: fmt.Errorf("reading the become password: %w", err)}
		}
		opts.BecomePassword = string(pw)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first Ctrl-C cancels every host and prints the recap; restoring
	// the default handler lets a second one kill gokube at once.
	go func() { <-ctx.Done(); stop() }()
	recap, err := engine.Run(ctx, opts)
	w := cmd.OutOrStdout()
	if f.output == "json" {
		w = cmd.ErrOrStderr() // stdout is one JSON document
	}
	afterPlay(cmd, f, playbook, recap, w)
	if f.timeline != "" && recap != nil {
		if terr := timeline.Write(f.timeline, timelineOf(playbook, recap)); terr != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %v\n", terr)
		} else {
			fmt.Fprintf(w, "timeline: %s\n", f.timeline)
		}
	}
	return err
}

func newInventoryCmd() *cobra.Command {
	var inv string
	var list, graph bool
	var host string
	var varsSource bool
	var vaultIDs, vaultFiles []string
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "show the inventory as the engine sees it (--list, --graph, --host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if inv == "" {
				// Like ansible-inventory: ansible.cfg's inventory when -i is absent.
				c, _, err := config.Load(config.DefaultEnv())
				if err != nil {
					return &engine.UsageError{Err: err}
				}
				if len(c.Inventory) != 1 {
					return &engine.UsageError{Err: errors.New("no inventory given (-i, or one inventory in ansible.cfg)")}
				}
				inv = c.Inventory[0]
			}
			kr, err := vault.Load(vaultIDs, vaultFiles)
			if err != nil {
				return &engine.UsageError{Err: err}
			}
			i, err := inventory.LoadWith(inv, inventory.LoadOptions{Vault: kr})
			if err != nil {
				return &engine.UsageError{Err: err}
			}
			w := cmd.OutOrStdout()
			for _, warn := range i.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "[WARNING]: %s\n", warn)
			}
			switch {
			case host != "":
				h, ok := i.Host(host)
				if !ok {
					return &engine.UsageError{Err: fmt.Errorf("host %q is not in the inventory", host)}
				}
				if varsSource {
					// One line per variable: name, value, and the file:line that set it.
					for _, k := range slices.Sorted(maps.Keys(h.Vars)) {
						v, _ := json.Marshal(h.Vars[k])
						src := i.VarSource(host, k)
						if src == "" {
							src = "-"
						}
						fmt.Fprintf(w, "%s = %s\t# %s\n", k, v, src)
					}
					return nil
				}
				return printJSON(w, h.Vars)
			case graph:
				g := i.Graph()
				if !strings.HasSuffix(g, "\n") {
					g += "\n"
				}
				fmt.Fprint(w, g)
				return nil
			default:
				_ = list
				b, err := i.ListJSON()
				if err != nil {
					return err
				}
				_, err = w.Write(append(b, '\n'))
				return err
			}
		},
	}
	cmd.Flags().StringVarP(&inv, "inventory", "i", "", "inventory file")
	cmd.Flags().BoolVar(&list, "list", false, "all groups and hosts with their merged vars (ansible-inventory --list shape; the default)")
	cmd.Flags().BoolVar(&graph, "graph", false, "the group tree")
	cmd.Flags().StringVar(&host, "host", "", "one host's merged vars")
	cmd.Flags().StringArrayVar(&vaultIDs, "vault-id", nil, "Ansible Vault password as LABEL@FILE or FILE (repeatable)")
	cmd.Flags().StringArrayVar(&vaultFiles, "vault-password-file", nil, "file holding an Ansible Vault password (repeatable)")
	cmd.Flags().BoolVar(&varsSource, "vars-source", false, "with --host: each variable with the file:line that set it")
	return cmd
}

func newGraphCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "graph PLAYBOOK",
		Short: "print the playbook's plan as a Graphviz DOT graph, without connecting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pb, err := engine.LoadPlaybook(args[0], nil, roles.FS)
			if err != nil {
				return err
			}
			engine.Graph(cmd.OutOrStdout(), pb)
			return nil
		},
	}
}

func printJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// timelineOf turns a run's recap into the timeline's rows and bars; hosts
// without a task (outside --limit) get no row.
func timelineOf(playbook string, r *engine.Recap) timeline.Run {
	tr := timeline.Run{Total: r.Duration}
	seen := map[string]bool{}
	for _, ev := range r.Events {
		if ev.End <= 0 {
			continue // decided without running (no bar to draw)
		}
		seen[ev.Host] = true
		tr.Bars = append(tr.Bars, timeline.Bar{Host: ev.Host, Task: ev.Task, Status: ev.Status, Start: ev.Start, End: ev.End,
			RoundTrips: ev.RoundTrips, Bytes: ev.Bytes, Handler: ev.Handler, Play: ev.Play, Batch: ev.Batch})
	}
	for _, h := range r.HostOrder {
		if seen[h] {
			tr.Hosts = append(tr.Hosts, h)
		}
	}
	tr.Title = fmt.Sprintf("gokube play %s: %d host(s), %s", filepath.Base(playbook), len(tr.Hosts), r.Duration.Round(time.Millisecond))
	return tr
}
