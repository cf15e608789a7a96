package engine

import (
	"gokube/internal/vault"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// src is a file either on disk (fsys nil) or inside a bundled fs.FS.
type src struct {
	fsys    fs.FS
	path    string // OS path, or slash path inside fsys
	display string // what messages show
	// vault decrypts Ansible Vault files and `!vault` values read through
	// this src; join and dir hand it on, so every file reached from the
	// playbook or a role decrypts alike.
	vault *vault.Keyring
}

func (s src) read() ([]byte, error) {
	if s.fsys == nil {
		return os.ReadFile(s.path)
	}
	return fs.ReadFile(s.fsys, s.path)
}

func (s src) dir() src {
	if s.fsys == nil {
		return src{path: filepath.Dir(s.path), display: filepath.Dir(s.display), vault: s.vault}
	}
	return src{fsys: s.fsys, path: path.Dir(s.path), display: path.Dir(s.display), vault: s.vault}
}

// join resolves rel against the directory s.
func (s src) join(rel string) src {
	if s.fsys == nil {
		if filepath.IsAbs(rel) {
			return src{path: rel, display: rel, vault: s.vault}
		}
		return src{path: filepath.Join(s.path, rel), display: filepath.Join(s.display, rel), vault: s.vault}
	}
	return src{fsys: s.fsys, path: path.Join(s.path, rel), display: path.Join(s.display, rel), vault: s.vault}
}

func (s src) exists() bool {
	var err error
	if s.fsys == nil {
		_, err = os.Stat(s.path)
	} else {
		_, err = fs.Stat(s.fsys, s.path)
	}
	return err == nil
}

// asFS returns the directory s as an fs.FS (for modules' Env.Files).
func (s src) asFS() fs.FS {
	if s.fsys == nil {
		return os.DirFS(s.path)
	}
	sub, err := fs.Sub(s.fsys, s.path)
	if err != nil {
		return s.fsys
	}
	return sub
}

func displayPath(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}

// where is the file as messages name it: a bundled file says so, since
// roles/pki/tasks/main.yml is not a file beside the playbook (a local
// roles/ folder overrides a bundled role by name).
func (s src) where() string {
	if s.fsys != nil {
		return s.display + " (bundled)"
	}
	return s.display
}
