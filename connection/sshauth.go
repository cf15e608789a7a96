package connection

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// credentials are loaded once per DialSSH; methods builds the auth
// methods of one attempt, counting the round trips they make.
type credentials struct {
	signers  []ssh.Signer
	password string
}

// Its errors (a key that is missing, unreadable, encrypted without a
// passphrase, not a key) are the caller's to report as unreachable, like
// a key the server refuses: all are "cannot log in".
func loadCredentials(cfg SSHConfig) (*credentials, func(), error) {
	cr := &credentials{password: cfg.Password}
	for _, f := range cfg.KeyFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("private key: %w", err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			if cfg.KeyPassphrase == "" {
				return nil, nil, fmt.Errorf("private key %s: %w (or load the key into ssh-agent)", f, ErrPassphraseNeeded)
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(cfg.KeyPassphrase))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("private key %s: %w", f, err)
		}
		cr.signers = append(cr.signers, s)
	}
	closeAgent := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			// Agent signers sign through this connection during the
			// handshake; it is closed once the dial is over.
			if as, err := agent.NewClient(ac).Signers(); err == nil {
				cr.signers = append(cr.signers, as...)
			}
			closeAgent = func() { ac.Close() }
		}
	}
	if len(cr.signers) == 0 && cr.password == "" {
		closeAgent()
		return nil, nil, errors.New("no SSH credentials: give a private key, a password, or run ssh-agent")
	}
	return cr, closeAgent, nil
}

// methods returns the auth methods for one attempt. The client asks the
// server about each key (one round trip, on the first PublicKey call)
// and signs with the accepted one (one more), so counting those
// calls counts authentication round trips exactly.
func (cr *credentials) methods(rt *atomic.Int64) []ssh.AuthMethod {
	var auth []ssh.AuthMethod
	if len(cr.signers) > 0 {
		counted := make([]ssh.Signer, len(cr.signers))
		for i, s := range cr.signers {
			counted[i] = countSigner(s, rt)
		}
		auth = append(auth, ssh.PublicKeys(counted...))
	}
	if pw := cr.password; pw != "" {
		auth = append(auth,
			ssh.PasswordCallback(func() (string, error) {
				rt.Add(1)
				return pw, nil
			}),
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				rt.Add(1)
				ans := make([]string, len(qs))
				for i := range ans {
					ans[i] = pw
				}
				return ans, nil
			}))
	}
	return auth
}

// The wrappers keep the signer's interface level (plain, algorithm,
// multi-algorithm) because the client picks signature algorithms by it.
type countedSigner struct {
	ssh.Signer
	rt      *atomic.Int64
	queried *atomic.Bool // the client reads the key more than once per query
}

func (s countedSigner) PublicKey() ssh.PublicKey {
	if !s.queried.Swap(true) {
		s.rt.Add(1)
	}
	return s.Signer.PublicKey()
}

func (s countedSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s.rt.Add(1)
	return s.Signer.Sign(r, data)
}

type countedAlgSigner struct {
	countedSigner
	as ssh.AlgorithmSigner
}

func (s countedAlgSigner) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	s.rt.Add(1)
	return s.as.SignWithAlgorithm(r, data, algo)
}

type countedMultiSigner struct {
	countedAlgSigner
	algos []string
}

func (s countedMultiSigner) Algorithms() []string { return s.algos }

func countSigner(s ssh.Signer, rt *atomic.Int64) ssh.Signer {
	cs := countedSigner{Signer: s, rt: rt, queried: new(atomic.Bool)}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return cs
	}
	cas := countedAlgSigner{countedSigner: cs, as: as}
	if ms, ok := s.(ssh.MultiAlgorithmSigner); ok {
		return countedMultiSigner{countedAlgSigner: cas, algos: ms.Algorithms()}
	}
	return cas
}
