// Command gokube runs Ansible-style playbooks over SSH, fast.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "gokube",
		Short:         "gokube runs Ansible-style playbooks over SSH and builds HA Kubernetes control planes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newLabCmd(), newDocCmd(), newConfigCmd())
	// play, inventory, graph: added by the engine's CLI file (cli_engine.go).
	addEngineCommands(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		var ec interface{ ExitCode() int }
		if asExit(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
