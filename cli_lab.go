package main

import "github.com/spf13/cobra"

// newLabCmd is owned by the lab work (see docs/DESIGN.md).
func newLabCmd() *cobra.Command {
	return &cobra.Command{Use: "lab", Short: "local lab hosts (systemd-nspawn)"}
}
