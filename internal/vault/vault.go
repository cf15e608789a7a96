// Package vault reads Ansible Vault data, so that kubespray users' existing
// secrets load unchanged: whole files that begin with
// `$ANSIBLE_VAULT;1.1;AES256` (or 1.2 with a vault id) and inline YAML
// values tagged `!vault`. Only decryption: gokube never writes vault data.
//
// The format (Ansible's VaultAES256): the body is hex of
// "hex(salt)\nhex(hmac)\nhex(ciphertext)"; PBKDF2-HMAC-SHA256 with 10000
// iterations derives 80 bytes from the password and salt: an AES-256 key,
// an HMAC-SHA256 key and the CTR counter's initial value; the plaintext is
// PKCS#7 padded to 16 bytes.
package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

const header = "$ANSIBLE_VAULT;"

// ErrNoPassword: vault data met without any vault password given.
var ErrNoPassword = errors.New("encrypted with Ansible Vault, and no vault password was given (--vault-password-file FILE or --vault-id [LABEL@]FILE)")

// Secret is one vault password and the id (label) it was given with.
type Secret struct {
	ID       string
	Password []byte
}

// Keyring holds the run's vault passwords in the order given; a nil
// Keyring has none.
type Keyring struct {
	secrets []Secret
}

// IsEncrypted reports whether b is vault data (an encrypted file's whole
// content, or an inline value's text).
func IsEncrypted(b []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte(header))
}

// Load reads the passwords named by --vault-id values ("label@file" or
// "file") and --vault-password-file values. Like Ansible, a password file
// holds the password on its first line (trailing whitespace dropped). An
// executable password script is not run: gokube refuses it rather than
// reading a script as a password.
func Load(ids, passwordFiles []string) (*Keyring, error) {
	var k Keyring
	add := func(id, file string) error {
		st, err := os.Stat(file)
		if err != nil {
			return fmt.Errorf("vault password file: %w", err)
		}
		if st.Mode()&0o111 != 0 {
			return fmt.Errorf("vault password file %s is executable: password scripts are not supported by gokube; give a file holding the password", file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("vault password file: %w", err)
		}
		pw, _, _ := bytes.Cut(b, []byte("\n"))
		pw = bytes.TrimRight(pw, " \t\r")
		if len(pw) == 0 {
			return fmt.Errorf("vault password file %s is empty", file)
		}
		k.secrets = append(k.secrets, Secret{ID: id, Password: pw})
		return nil
	}
	for _, v := range ids {
		id, file, ok := strings.Cut(v, "@")
		if !ok {
			id, file = "default", v
		}
		if id == "" || file == "" {
			return nil, fmt.Errorf("--vault-id %q: want LABEL@FILE or FILE", v)
		}
		if file == "prompt" {
			return nil, fmt.Errorf("--vault-id %q: gokube never reads the terminal; give a password file", v)
		}
		if err := add(id, file); err != nil {
			return nil, err
		}
	}
	for _, f := range passwordFiles {
		if err := add("default", f); err != nil {
			return nil, err
		}
	}
	if len(k.secrets) == 0 {
		return nil, nil
	}
	return &k, nil
}

// Decrypt returns the plaintext of vault data. The password of a matching
// vault id is tried first, then every other (as Ansible does).
func (k *Keyring) Decrypt(data []byte) ([]byte, error) {
	text := strings.TrimSpace(string(data))
	first, body, _ := strings.Cut(text, "\n")
	fields := strings.Split(strings.TrimSpace(first), ";")
	if len(fields) < 3 || fields[0] != "$ANSIBLE_VAULT" {
		return nil, errors.New("not Ansible Vault data")
	}
	if fields[1] != "1.1" && fields[1] != "1.2" {
		return nil, fmt.Errorf("Ansible Vault format %s is not supported (1.1 and 1.2 are)", fields[1])
	}
	if fields[2] != "AES256" {
		return nil, fmt.Errorf("Ansible Vault cipher %s is not supported (AES256 is)", fields[2])
	}
	label := ""
	if len(fields) > 3 {
		label = fields[3]
	}
	if k == nil || len(k.secrets) == 0 {
		return nil, ErrNoPassword
	}
	raw, err := hex.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("Ansible Vault data is damaged: %w", err)
	}
	parts := strings.Split(string(raw), "\n")
	if len(parts) != 3 {
		return nil, errors.New("Ansible Vault data is damaged: want salt, hmac and ciphertext")
	}
	salt, err1 := hex.DecodeString(parts[0])
	mac, err2 := hex.DecodeString(parts[1])
	ct, err3 := hex.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("Ansible Vault data is damaged: %w", err)
	}
	order := make([]Secret, 0, len(k.secrets))
	for _, s := range k.secrets {
		if label != "" && s.ID == label {
			order = append([]Secret{s}, order...)
		} else {
			order = append(order, s)
		}
	}
	for _, s := range order {
		if pt, ok := decryptWith(s.Password, salt, mac, ct); ok {
			return pt, nil
		}
	}
	if label != "" {
		return nil, fmt.Errorf("no vault password given decrypts it (vault id %q)", label)
	}
	return nil, errors.New("no vault password given decrypts it")
}

func decryptWith(password, salt, mac, ct []byte) ([]byte, bool) {
	key, err := pbkdf2.Key(sha256.New, string(password), salt, 10000, 80)
	if err != nil {
		return nil, false
	}
	h := hmac.New(sha256.New, key[32:64])
	h.Write(ct)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, false
	}
	block, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, false
	}
	pt := make([]byte, len(ct))
	cipher.NewCTR(block, key[64:80]).XORKeyStream(pt, ct)
	n := len(pt)
	if n == 0 || n%aes.BlockSize != 0 {
		return nil, false
	}
	pad := int(pt[n-1])
	if pad < 1 || pad > aes.BlockSize || !bytes.Equal(pt[n-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, false
	}
	return pt[:n-pad], true
}

// NodeError is a `!vault` value that could not be decrypted, with its line.
type NodeError struct {
	Line int
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("line %d: !vault value: %v", e.Line, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// DecryptTree replaces every scalar tagged `!vault` under n by its
// plaintext, as a plain string (Ansible's vaulted values are strings).
func (k *Keyring) DecryptTree(n *yaml.Node) error {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!vault" {
		pt, err := k.Decrypt([]byte(n.Value))
		if err != nil {
			return &NodeError{Line: n.Line, Err: err}
		}
		n.Tag, n.Value, n.Style = "!!str", string(pt), 0
		return nil
	}
	for _, c := range n.Content {
		if err := k.DecryptTree(c); err != nil {
			return err
		}
	}
	return nil
}
