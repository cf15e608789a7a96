package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// addEngineCommands is owned by the engine work (see docs/DESIGN.md).
func addEngineCommands(root *cobra.Command) {}

func asExit(err error, target *interface{ ExitCode() int }) bool {
	return errors.As(err, target)
}
