// Package atomicfile writes files on the control machine so that a reader
// (or a crash) never sees half a file: the data goes to a temporary file
// in the same directory, which is renamed over the target. It is the one
// such helper; lab state, fetch, x509 and the retry file use it.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode applied before any byte is written
// (a key is never readable by others, not even briefly). The directory
// must exist.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := WriteTemp(filepath.Dir(path), filepath.Base(path), data, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteTemp writes data, synced to disk, to a new hidden temporary file
// in dir named after base, and returns its name for the caller to rename.
// Callers that must replace several files together (a key and its
// certificate) write every temporary first, then rename.
func WriteTemp(dir, base string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}
