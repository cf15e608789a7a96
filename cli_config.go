package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gokube/config"
	"gokube/engine"
	"gokube/inventory"
)

// ansible.cfg settings are defaults under the command line: a flag the
// operator set wins, then the file, then gokube's default. Inventory
// variables (ansible_user, ...) still win over both, as in Ansible.

// cfgFlags are the play flags ansible.cfg can set, with the ansible.cfg
// setting behind each.
var cfgFlags = []struct{ flag, setting string }{
	{"inventory", "defaults.inventory"},
	{"user", "defaults.remote_user"},
	{"private-key", "defaults.private_key_file"},
	{"forks", "defaults.forks"},
	{"timeout", "defaults.timeout"},
	{"become", "privilege_escalation.become"},
	{"become-user", "privilege_escalation.become_user"},
	{"ask-become-pass", "privilege_escalation.become_ask_pass"},
}

// applyAnsibleCfg loads the ansible.cfg Ansible would read (and the
// ANSIBLE_* variables) and fills the flags the operator did not set. Notes (ignored keys at -v, host key
// checking) go to w.
func applyAnsibleCfg(cmd *cobra.Command, f *playFlags, w io.Writer) error {
	c, warning, err := config.Load(config.DefaultEnv())
	if warning != "" {
		fmt.Fprintln(w, "WARNING:", warning)
	}
	if err != nil {
		return &engine.UsageError{Err: err}
	}
	if c.Path == "" && len(c.Sources) == 0 {
		return nil
	}
	changed := cmd.Flags().Changed
	if !changed("inventory") && len(c.Inventory) > 0 {
		if len(c.Inventory) > 1 {
			return &engine.UsageError{Err: fmt.Errorf("%s: [defaults] inventory: gokube reads one inventory (a file or a directory), got %d", c.Sources["defaults.inventory"], len(c.Inventory))}
		}
		f.inv = c.Inventory
	}
	if !changed("user") && c.RemoteUser != "" {
		f.user = c.RemoteUser
	}
	if !changed("private-key") && c.PrivateKeyFile != "" {
		f.key = c.PrivateKeyFile
	}
	if !changed("forks") && c.Forks > 0 {
		f.forks = c.Forks
	}
	if !changed("timeout") && c.Timeout > 0 {
		f.timeout = c.Timeout
	}
	if !changed("become") && c.Become != nil {
		f.become = *c.Become
	}
	if !changed("become-user") && c.BecomeUser != "" {
		f.becomeUser = c.BecomeUser
	}
	if !changed("ask-become-pass") && c.BecomeAskPass != nil {
		f.askPass = *c.BecomeAskPass
	}
	if c.RetryFilesEnabled != nil && !*c.RetryFilesEnabled && !changed("retry-file") {
		f.noRetry = true
	}
	f.retryDir = c.RetryFilesSavePath
	f.rolesPath = c.RolesPath
	f.proxyJump = c.ProxyJump
	if c.HostKeyChecking != nil && !*c.HostKeyChecking && !f.acceptNew {
		fmt.Fprintf(w, "NOTE: %s sets host_key_checking = False; gokube keeps checking host keys (--accept-new-host-keys adds unknown ones, a changed key is always refused)\n", c.Sources["defaults.host_key_checking"])
	}
	if f.verbose > 0 && c.Path != "" {
		fmt.Fprintf(w, "using %s (%s)\n", c.Path, c.Why)
		for _, ig := range c.Ignored {
			fmt.Fprintf(w, "%s: ignored (gokube does not use it)\n", ig)
		}
	}
	return nil
}

func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "show the ansible.cfg settings gokube uses, their values and where each came from",
		Long: `gokube reads ansible.cfg the way Ansible finds it: $ANSIBLE_CONFIG, ./ansible.cfg
(unless the directory is world-writable), ~/.ansible.cfg, /etc/ansible/ansible.cfg;
the first found is used. ANSIBLE_* variables of the same settings (ANSIBLE_FORKS,
ANSIBLE_REMOTE_USER, ...) win over it, command-line flags over both, inventory
variables over all. Keys gokube does not act on are listed as ignored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, warning, err := config.Load(config.DefaultEnv())
			if err != nil {
				return &engine.UsageError{Err: err}
			}
			writeConfig(cmd.OutOrStdout(), c, warning, newPlayCmd())
			return nil
		},
	}
}

// writeConfig prints each setting in effect: from the file (with its
// file:line) or gokube's default (the play flag's default).
func writeConfig(w io.Writer, c *config.Config, warning string, play *cobra.Command) {
	if warning != "" {
		fmt.Fprintln(w, "WARNING:", warning)
	}
	if c.Path == "" {
		fmt.Fprintln(w, "config file: none (looked at $ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg, /etc/ansible/ansible.cfg)")
	} else {
		fmt.Fprintf(w, "config file: %s (found as %s)\n", c.Path, c.Why)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSETTING\tVALUE\tFROM")
	row := func(setting, value, def string) {
		from := c.Sources[setting]
		if from == "" {
			from, value = "default", def
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", setting, value, from)
	}
	flagDef := func(name string) string {
		if fl := play.Flags().Lookup(name); fl != nil {
			if fl.DefValue == "" || fl.DefValue == "[]" {
				return "(none)"
			}
			return fl.DefValue
		}
		return ""
	}
	boolStr := func(b *bool) string {
		if b == nil {
			return ""
		}
		return fmt.Sprint(*b)
	}
	row("defaults.inventory", strings.Join(c.Inventory, ","), "(none: -i needed)")
	row("defaults.remote_user", c.RemoteUser, "(none: the SSH user is ansible_user or the login name)")
	row("defaults.private_key_file", c.PrivateKeyFile, "(none: ssh-agent keys only)")
	row("defaults.forks", fmt.Sprint(c.Forks), flagDef("forks"))
	row("defaults.timeout", c.Timeout.String(), flagDef("timeout"))
	row("defaults.roles_path", strings.Join(c.RolesPath, ":"), "(none: roles/ beside the playbook, then the bundled roles)")
	row("defaults.host_key_checking", boolStr(c.HostKeyChecking)+" (gokube checks host keys regardless)", "true")
	row("defaults.retry_files_enabled", boolStr(c.RetryFilesEnabled), "true")
	row("defaults.retry_files_save_path", c.RetryFilesSavePath, "(beside the playbook)")
	row("privilege_escalation.become", boolStr(c.Become), flagDef("become"))
	row("privilege_escalation.become_user", c.BecomeUser, "root")
	row("privilege_escalation.become_ask_pass", boolStr(c.BecomeAskPass), flagDef("ask-become-pass"))
	row("privilege_escalation.become_method", "sudo", "sudo")
	jump := ""
	if j := c.ProxyJump; j != nil {
		jump = " (ProxyJump " + jumpString(j) + "; other ssh options ignored)"
	}
	row("ssh_connection.ssh_args", c.SSHArgs+jump, "(none)")
	tw.Flush()
	if len(c.Ignored) > 0 {
		fmt.Fprintln(w, "\nignored (Ansible's, not gokube's):")
		for _, ig := range c.Ignored {
			fmt.Fprintln(w, "  "+ig)
		}
	}
}

func jumpString(j *inventory.Jump) string {
	s := j.Addr
	if j.User != "" {
		s = j.User + "@" + s
	}
	if j.Port != 0 {
		s = fmt.Sprintf("%s:%d", s, j.Port)
	}
	return s
}
