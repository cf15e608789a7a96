package vault

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The fixtures in testdata were made by ansible-vault 2.14 (encrypt,
// encrypt --vault-id prod@pw2, encrypt_string); TestAnsibleVaultLive
// makes new ones at test time.

func keyring(t *testing.T, ids ...string) *Keyring {
	t.Helper()
	k, err := Load(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDecryptFile(t *testing.T) {
	want, _ := os.ReadFile("testdata/plain.yml")
	data, _ := os.ReadFile("testdata/file.yml")
	if !IsEncrypted(data) || IsEncrypted(want) {
		t.Fatal("IsEncrypted")
	}
	got, err := keyring(t, "testdata/pw").Decrypt(data)
	if err != nil || string(got) != string(want) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := keyring(t, "testdata/pw2").Decrypt(data); err == nil || !strings.Contains(err.Error(), "no vault password given decrypts it") {
		t.Fatalf("wrong password: %v", err)
	}
	var none *Keyring
	if _, err := none.Decrypt(data); !errors.Is(err, ErrNoPassword) {
		t.Fatalf("no password: %v", err)
	}
	// One hex digit of the ciphertext changed: the HMAC refuses it.
	lines := strings.Split(string(data), "\n")
	b := []byte(lines[len(lines)-2])
	b[len(b)-1] ^= 1
	lines[len(lines)-2] = string(b)
	if _, err := keyring(t, "testdata/pw").Decrypt([]byte(strings.Join(lines, "\n"))); err == nil {
		t.Fatal("damaged data decrypted")
	}
}

func TestDecryptVaultID(t *testing.T) {
	want, _ := os.ReadFile("testdata/plain.yml")
	data, _ := os.ReadFile("testdata/labelled.yml")
	got, err := keyring(t, "testdata/pw", "prod@testdata/pw2").Decrypt(data)
	if err != nil || string(got) != string(want) {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := keyring(t, "testdata/pw").Decrypt(data); err == nil || !strings.Contains(err.Error(), `vault id "prod"`) {
		t.Fatalf("without prod's password: %v", err)
	}
}

func TestDecryptTree(t *testing.T) {
	data, _ := os.ReadFile("testdata/inline.yml")
	var doc yaml.Node
	if err := yaml.Unmarshal(append([]byte("plain: x\n"), data...), &doc); err != nil {
		t.Fatal(err)
	}
	if err := keyring(t, "testdata/pw").DecryptTree(&doc); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := doc.Decode(&m); err != nil || m["api_token"] != "inline-secret-42" || m["plain"] != "x" {
		t.Fatalf("%v %v", m, err)
	}
	doc = yaml.Node{}
	_ = yaml.Unmarshal(append([]byte("plain: x\n"), data...), &doc)
	var ne *NodeError
	if err := keyring(t, "testdata/pw2").DecryptTree(&doc); !errors.As(err, &ne) || ne.Line != 2 {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "pw.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho x\n"), 0o700)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct {
		ids  []string
		want string
	}{
		{[]string{script}, "password scripts are not supported"},
		{[]string{empty}, "is empty"},
		{[]string{"prod@prompt"}, "never reads the terminal"},
		{[]string{"@x"}, "want LABEL@FILE"},
		{[]string{filepath.Join(dir, "missing")}, "no such file"},
	} {
		if _, err := Load(c.ids, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.ids, err, c.want)
		}
	}
	if k, err := Load(nil, nil); k != nil || err != nil {
		t.Fatalf("no passwords: %v %v", k, err)
	}
}

// TestAnsibleVaultLive encrypts with the installed ansible-vault (make test
// installs ansible-core) and decrypts here: the format is Ansible's today,
// not only the fixtures'.
func TestAnsibleVaultLive(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("live pass with spaces\n"), 0o600)
	f := filepath.Join(dir, "v.yml")
	secret := "multi\nline: secret é\n"
	os.WriteFile(f, []byte(secret), 0o600)
	if out, err := exec.Command("ansible-vault", "encrypt", "--vault-id", "lab@"+pw, f).CombinedOutput(); err != nil {
		t.Fatalf("ansible-vault: %v %s", err, out)
	}
	data, _ := os.ReadFile(f)
	got, err := keyring(t, "lab@"+pw).Decrypt(data)
	if err != nil || string(got) != secret {
		t.Fatalf("%q %v", got, err)
	}
}
