package main

import (
	"github.com/spf13/cobra"

	"gokube/engine"
	"gokube/internal/vault"
	"gokube/roles"
)

// newRenderCmd is `gokube render`: look before you run.
func newRenderCmd() *cobra.Command {
	var inv, host, playbook string
	var extra, vaultIDs, vaultFiles []string
	cmd := &cobra.Command{
		Use:   "render -i INVENTORY --host HOST [--playbook PLAYBOOK] TEMPLATE_FILE|VARIABLE",
		Short: "render a template, or show a variable and where it was set, for one host, offline",
		Long: `render shows what a run would give one host, without contacting it: a template file
rendered with the host's variables, or a variable's value and the file (or layer) that set it.
Precedence is a run's; with --playbook, the first play whose hosts include HOST adds its vars,
vars_files and roles' defaults and vars. Facts are absent (no host is contacted).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := vault.Load(vaultIDs, vaultFiles)
			if err != nil {
				return &engine.UsageError{Err: err}
			}
			opts := engine.Options{Playbook: playbook, ExtraVars: extra, BundledRoles: roles.FS, Vault: kr}
			if inv != "" {
				opts.Inventory = []string{inv}
			}
			return engine.RenderFor(cmd.OutOrStdout(), opts, host, args[0])
		},
	}
	cmd.Flags().StringVarP(&inv, "inventory", "i", "", "inventory file")
	cmd.Flags().StringVar(&host, "host", "", "the host to render for")
	cmd.Flags().StringVar(&playbook, "playbook", "", "take play vars and role defaults/vars from this playbook")
	cmd.Flags().StringArrayVarP(&extra, "extra-vars", "e", nil, "extra variables (key=value, @file, JSON)")
	cmd.Flags().StringArrayVar(&vaultIDs, "vault-id", nil, "Ansible Vault password as LABEL@FILE or FILE (repeatable)")
	cmd.Flags().StringArrayVar(&vaultFiles, "vault-password-file", nil, "file holding an Ansible Vault password (repeatable)")
	_ = cmd.MarkFlagRequired("host")
	_ = cmd.MarkFlagRequired("inventory")
	return cmd
}
