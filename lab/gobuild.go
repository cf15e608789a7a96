package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// findGo returns the go command: on the PATH, else where Go's own tarball
// installs it (often without a PATH entry; the Makefile looks there too).
func findGo() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd, err = exec.LookPath("/usr/local/go/bin/go")
	}
	if err != nil {
		return "", fmt.Errorf("building from the module proxy needs the go command (Go 1.26 or newer): %w", err)
	}
	return goCmd, nil
}

// goBuild runs one `go build -trimpath` of pkg in the pinned module dir. It
// is niced because the machine it runs on is usually shared with tests and
// other builds; -p is left at its default (the CPU count) since nice already
// yields to them. extraEnv comes last, so it wins (GOTOOLCHAIN, for one).
func goBuild(ctx context.Context, goCmd, dir, pkg, ldflags, out string, extraEnv []string, log io.Writer) error {
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg}
	name, argv := goCmd, args
	if nice, err := exec.LookPath("nice"); err == nil {
		name, argv = nice, append([]string{"-n", "10", goCmd}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = dir
	// Static binaries for the lab's hosts, which share this machine's kernel
	// and CPU; GOWORK=off so a workspace of the caller's cannot swap modules.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout = log
	cmd.Stderr = log
	// go build leaves its compile and link children running when it is
	// killed alone: on cancellation the whole process group it leads goes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (in %s): %w", pkg, dir, err)
	}
	return nil
}

// findToolsModule returns the directory tools/<sub> of the gokube source
// tree whose go.mod declares module: looked for upwards from the working
// directory, then from the running executable's directory (bin/gokube in a
// checkout).
func findToolsModule(sub, module string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			cand := filepath.Join(d, "tools", sub)
			if isModuleDir(cand, module) {
				return cand, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("tools/%s (module %s) not found above %s: run gokube from its source tree", sub, module, strings.Join(starts, " or "))
}

// isModuleDir reports whether dir/go.mod declares module.
func isModuleDir(dir, module string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1] == module
		}
	}
	return false
}

// cacheDir is one directory of the artifact cache opened for a build.
type cacheDir struct {
	outDir, sumsPath string
	missing          []string // names whose file is absent or differs from SHA256SUMS
	unlock           func()
}

// openCacheDir takes the cache's lock (every build and Artifacts rewrite
// SHA256SUMS, and two builds of the same binaries at once would only double
// the work) and says which of names under relDir must be built. The caller
// calls unlock when done.
func openCacheDir(ctx context.Context, artifactDir, relDir, what string, names []string) (*cacheDir, error) {
	c := &cacheDir{outDir: filepath.Join(artifactDir, filepath.FromSlash(relDir)), sumsPath: filepath.Join(artifactDir, "SHA256SUMS")}
	if err := os.MkdirAll(c.outDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s artifacts: %w", what, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(artifactDir, ".lock"))
	if err != nil {
		return nil, err
	}
	old, err := os.ReadFile(c.sumsPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		unlock()
		return nil, fmt.Errorf("%s artifacts: %w", what, err)
	}
	sums, err := parseSums(c.sumsPath, old)
	if err != nil {
		unlock()
		return nil, err
	}
	for _, n := range names {
		if got, err := fileSHA256(filepath.Join(c.outDir, n)); err != nil || got != sums[relDir+"/"+n] {
			c.missing = append(c.missing, n)
		}
	}
	c.unlock = unlock
	return c, nil
}
