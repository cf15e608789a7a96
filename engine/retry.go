package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gokube/internal/atomicfile"
)

// Retry files: after a run where hosts failed or were unreachable, the
// failed hosts are written one per line, the shape --limit @FILE reads
// (inventory.Match), so the operator re-runs just them, as Ansible's
// .retry files allowed and kubespray users ask for ("resume where it
// failed").

// FailedHosts lists the hosts that failed or were unreachable, in
// inventory order.
func (r *Recap) FailedHosts() []string {
	var out []string
	for _, h := range r.HostOrder {
		if s := r.Hosts[h]; s != nil && (s.Failed > 0 || s.Unreachable > 0) {
			out = append(out, h)
		}
	}
	return out
}

// DefaultRetryFile is where the retry file of a playbook goes when nothing
// else is configured: beside it, named after it (site.yml -> site.retry),
// like Ansible; dir, when set (ansible.cfg's retry_files_save_path), is
// used instead of the playbook's directory.
func DefaultRetryFile(playbook, dir string) string {
	base := strings.TrimSuffix(filepath.Base(playbook), filepath.Ext(playbook)) + ".retry"
	if dir != "" {
		return filepath.Join(dir, base)
	}
	return filepath.Join(filepath.Dir(playbook), base)
}

// WriteRetryFile writes hosts, one per line, atomically (temp file +
// rename), so a re-run never reads half a list.
func WriteRetryFile(path string, hosts []string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("retry file: %w", err)
	}
	if err := atomicfile.Write(path, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("retry file: %w", err)
	}
	return nil
}
