package lab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gokube/internal/atomicfile"

	"golang.org/x/crypto/ssh"
)

// state is state.json: everything needed to find, stop and clean up what
// the lab made, written atomically after every change.
type state struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet"`
	// Image is the base root every host's overlay sits on. It is recorded
	// so a changed recipe never swaps the lower layer under running hosts.
	Image string       `json:"image"`
	Hosts []*hostState `json:"hosts"`
	Delay *delayState  `json:"delay,omitempty"`
}

type hostState struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	Addr    string `json:"addr"`
	Machine string `json:"machine"`
	// HostKey is the host's public key in authorized_keys format.
	HostKey string `json:"host_key"`
	// Proc is the systemd-nspawn process while the host runs.
	Proc Proc `json:"proc"`
	// Init is the container's init (nspawn's child, PID 1 of the host's
	// PID namespace), recorded once the host answers: should nspawn die
	// without taking it along, it is still found and stopped by PID.
	Init Proc `json:"init"`
	// Cut is set while the host's veth is off the bridge.
	Cut bool `json:"cut,omitempty"`
	// Kubelet hosts boot with what a kubelet and its container runtime
	// need from the container (see kubeletNspawn); kept across reboots.
	Kubelet bool `json:"kubelet,omitempty"`
	// Cgroups are a kubelet host's cgroups in the v1 controller
	// hierarchies, recorded at boot: they sit below the booting process's
	// own cgroups, which another process may not share.
	Cgroups []string `json:"cgroups,omitempty"`
}

type delayState struct {
	MS   int  `json:"ms"`
	Proc Proc `json:"proc"`
}

func (l *Lab) statePath() string { return filepath.Join(l.cfg.Dir, "state.json") }

func (l *Lab) loadState() error {
	b, err := os.ReadFile(l.statePath())
	if errors.Is(err, os.ErrNotExist) {
		l.st = &state{Name: l.cfg.Name, Subnet: l.cfg.Subnet}
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	st := &state{}
	if err := jsonUnmarshal(b, st, l.statePath()); err != nil {
		return err
	}
	l.st = st
	return nil
}

func jsonUnmarshal(b []byte, v any, path string) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (l *Lab) saveState() error {
	b, err := json.MarshalIndent(l.st, "", "  ")
	if err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	return writeFileAtomic(l.statePath(), append(b, '\n'), 0o644)
}

// writeFileAtomic is atomicfile.Write (kept as a name so the lab's many
// call sites read as before).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

// newKeyPair makes an ed25519 key as OpenSSH private key PEM and
// authorized_keys line.
func newKeyPair(comment string) (priv []byte, pub string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return nil, "", fmt.Errorf("marshal key: %w", err)
	}
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, "", fmt.Errorf("public key: %w", err)
	}
	line := string(ssh.MarshalAuthorizedKey(spk))
	return pem.EncodeToMemory(blk), line[:len(line)-1] + " " + comment, nil
}

// ensureKey creates the file pair path (0600) and path.pub once and returns
// the public line.
func ensureKey(path, comment string) (string, error) {
	if b, err := os.ReadFile(path + ".pub"); err == nil {
		if _, err := os.Stat(path); err == nil {
			return string(trimNL(b)), nil
		}
	}
	priv, pub, err := newKeyPair(comment)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, priv, 0o600); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return "", err
	}
	return pub, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
