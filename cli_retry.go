package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"gokube/engine"
)

// afterPlay writes the retry file of a run with failed or unreachable
// hosts and prints the command that re-runs just them; after a clean run
// of `--limit @RETRYFILE` the consumed file is removed.
func afterPlay(cmd *cobra.Command, f *playFlags, playbook string, recap *engine.Recap, w io.Writer) {
	if recap == nil || f.noRetry {
		return
	}
	path := f.retryFile
	if path == "" {
		path = engine.DefaultRetryFile(playbook, f.retryDir)
	}
	failed := recap.FailedHosts()
	if len(failed) == 0 {
		if lim, ok := strings.CutPrefix(f.limit, "@"); ok && samePath(lim, path) && !recap.Interrupted {
			if err := os.Remove(path); err == nil {
				fmt.Fprintf(w, "every host of %s succeeded; removed it\n", path)
			}
		}
		return
	}
	if err := engine.WriteRetryFile(path, failed); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: could not write the retry file: %v\n", err)
		return
	}
	fmt.Fprintf(w, "\n%d host(s) failed or were unreachable; they are listed in %s. To retry only them:\n    %s\n",
		len(failed), path, retryCommand(cmd, path))
}

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// retryCommand rebuilds the command line from the flags the operator set
// (so it does not depend on how the shell split os.Args), with --limit
// replaced by @retryFile.
func retryCommand(cmd *cobra.Command, retryFile string) string {
	words := []string{shellWord(os.Args[0])}
	path := strings.Fields(cmd.CommandPath())
	if cmd.HasParent() {
		path = path[1:] // the root is os.Args[0]
	}
	words = append(words, path...)
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		switch {
		case fl.Name == "limit" || fl.Name == "retry-file":
			return
		case fl.Value.Type() == "bool":
			if fl.Value.String() == "true" {
				words = append(words, "--"+fl.Name)
			}
		case fl.Value.Type() == "count":
			if fl.Shorthand != "" {
				var n int
				fmt.Sscan(fl.Value.String(), &n)
				words = append(words, "-"+strings.Repeat(fl.Shorthand, n))
			}
		default:
			vals := []string{fl.Value.String()}
			if sv, ok := fl.Value.(pflag.SliceValue); ok {
				vals = sv.GetSlice()
			}
			for _, v := range vals {
				words = append(words, "--"+fl.Name, shellWord(v))
			}
		}
	})
	for _, a := range cmd.Flags().Args() {
		words = append(words, shellWord(a))
	}
	return strings.Join(append(words, "--limit", shellWord("@"+retryFile)), " ")
}

// shellWord quotes s for a POSIX shell unless it is plain.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
