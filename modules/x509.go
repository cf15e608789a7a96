package modules

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gokube/internal/atomicfile"

	"github.com/pmezard/go-difflib/difflib"
)

// X509 is the `x509` module: a CA, or a key and certificate signed by a CA,
// generated on the control machine. It never contacts the host, so the CA key
// never leaves the control machine; roles copy the results to hosts with
// `copy`.
//
// Arguments:
//
//	path               directory on the control machine (created 0700), e.g. the pki folder beside the inventory
//	name               file base name: writes NAME.pem (0644) and NAME-key.pem (0600)
//	ca                 true: a self-signed CA
//	ca_name            sign with PATH/CA_NAME.pem and PATH/CA_NAME-key.pem (one of ca, ca_name is required)
//	common_name        subject CN (default: name)
//	organization       subject O (a string or a list)
//	dns_names          DNS SANs (list); an IP address here becomes an IP SAN
//	ip_addresses       IP SANs (list)
//	usages             server_auth, client_auth (default both for a leaf, none for a CA);
//	                   key usages follow: digitalSignature+keyEncipherment, or certSign+crlSign for a CA
//	key_type           ecdsa (P-256, default) or rsa (2048 bits)
//	validity_days      default 3650 for a CA, 825 otherwise (a leaf never outlives its CA);
//	                   used when a certificate is generated, changing it alone regenerates nothing
//	renew_before_days  regenerate when the certificate expires within this margin (default 30)
//
// It regenerates only when the certificate or key is missing or unreadable,
// the key does not match, the CN, O, SANs, usages or key type differ from the
// arguments, the certificate is not signed by the current CA (the CA was
// regenerated), or it expires within the margin; otherwise changed=false.
// Under check mode it predicts and writes nothing; a leaf is judged against
// the CA on disk, so a CA that this run would regenerate only shows up in the
// leaf's prediction when the leaf itself needs renewing. Runs sharing a
// directory are serialised with a lock file (PATH/.x509.lock), so a CA task
// run for many hosts at once makes one CA.
//
// Registers: path (directory), cert, key, ca_cert (leaf only), serial (hex),
// not_after (RFC 3339), fingerprint_sha256, changed_reason.
type X509 struct{}

// x509LockFile serialises runs that share a directory: the executor runs hosts in
// parallel, and a CA task evaluated for several hosts at once must produce
// one CA, not one per host.
const x509LockFile = ".x509.lock"

// Spec declares the x509 arguments.
func (X509) Spec() Spec {
	return Spec{Doc: "A CA, or a key and certificate signed by one, made on the control machine (the CA key never leaves it; roles copy the results with copy). Regenerates only when something is missing, different from the arguments, signed by an older CA, or expiring within the margin.", Returns: map[string]string{"ca_cert": "the CA certificate's path (leaf only)", "cert": "the certificate's path", "changed_reason": "why it was (re)generated", "fingerprint_sha256": "certificate fingerprint", "key": "the key's path", "not_after": "expiry (RFC 3339)", "path": "the directory", "serial": "serial (hex)"},
		Args: map[string]Arg{
			"path":              {Type: String, Required: true, Doc: "Directory on the control machine (made 0700)."},
			"name":              {Type: String, Required: true, Doc: "Base name: writes NAME.pem (0644) and NAME-key.pem (0600)."},
			"ca":                {Type: Bool, Doc: "Make a self-signed CA.", Default: "no"},
			"ca_name":           {Type: String, Doc: "Sign with PATH/CA_NAME.pem and its key."},
			"common_name":       {Type: String, Aliases: []string{"cn"}, Doc: "Subject CN.", Default: "name"},
			"organization":      {Type: List, Doc: "Subject O (one or a list)."},
			"dns_names":         {Type: List, Doc: "DNS subject alternative names; an IP address among them becomes an IP SAN."},
			"ip_addresses":      {Type: List, Doc: "IP subject alternative names."},
			"usages":            {Type: List, Choices: []string{"server_auth", "client_auth"}, Doc: "server_auth and/or client_auth (a leaf gets both by default)."},
			"key_type":          {Type: String, Choices: []string{"ecdsa", "rsa"}, Doc: "ecdsa (P-256) or rsa (2048 bits).", Default: "ecdsa"},
			"validity_days":     {Type: Int, Doc: "Validity of a new certificate; 3650 for a CA, 825 for a leaf."},
			"renew_before_days": {Type: Int, Doc: "Regenerate when the certificate expires within this many days.", Default: "30"},
		},
		RequireOneOf: [][]string{{"ca", "ca_name"}},
	}
}

type x509Params struct {
	dir, name   string
	isCA        bool
	caName      string
	cn          string
	org         []string
	dns         []string
	ips         []net.IP
	usageNames  []string
	ext         []x509.ExtKeyUsage
	keyType     string
	validity    time.Duration
	renewBefore time.Duration
}

func (p *x509Params) certPath() string { return filepath.Join(p.dir, p.name+".pem") }
func (p *x509Params) keyPath() string  { return filepath.Join(p.dir, p.name+"-key.pem") }

// x509Usage maps a usage argument to its extended key usage.
func x509Usage(name string) (x509.ExtKeyUsage, bool) {
	switch name {
	case "server_auth":
		return x509.ExtKeyUsageServerAuth, true
	case "client_auth":
		return x509.ExtKeyUsageClientAuth, true
	}
	return 0, false
}

func x509ParseArgs(args map[string]any) (*x509Params, error) {
	spec := X509{}.Spec()
	a, err := parseArgs("x509", spec, args)
	if err != nil {
		return nil, err
	}
	p := &x509Params{}
	p.dir = a.str("path")
	p.name = a.str("name")
	if p.dir == "" {
		return nil, a.err("path", "must not be empty")
	}
	if p.name == "" || strings.ContainsAny(p.name, "/\\") || p.name == "." || p.name == ".." {
		return nil, a.err("name", "must be a plain file base name, got %q", p.name)
	}
	p.isCA = a.boolean("ca", false)
	p.caName = a.str("ca_name")
	switch {
	case p.isCA && p.caName != "":
		return nil, a.err("ca_name", "a CA is self-signed: give ca or ca_name, not both")
	case !p.isCA && p.caName == "":
		return nil, a.err("ca_name", "required unless ca is true")
	case p.caName == p.name:
		return nil, a.err("ca_name", "a certificate cannot sign itself; use ca: true")
	case strings.ContainsAny(p.caName, "/\\"):
		return nil, a.err("ca_name", "must be a file base name in path, got %q", p.caName)
	}
	p.cn = a.strOr("common_name", p.name)
	if s, ok := a.m["organization"].(string); ok {
		// A plain string is one organization even if it contains a comma.
		if s != "" {
			p.org = []string{s}
		}
	} else {
		p.org = a.list("organization")
	}
	ips := a.list("ip_addresses")
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, a.err("ip_addresses", "%q is not an IP address", s)
		}
		p.ips = append(p.ips, ip)
	}
	// An address among dns_names (a VIP in etcd_extra_sans) is an IP SAN:
	// clients connecting by IP check IP SANs only.
	for _, s := range a.list("dns_names") {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(p.ips, ip.Equal) {
				p.ips = append(p.ips, ip)
			}
			continue
		}
		p.dns = append(p.dns, s)
	}
	if a.has("usages") {
		p.usageNames = a.list("usages")
	} else if !p.isCA {
		p.usageNames = []string{"server_auth", "client_auth"}
	}
	for _, u := range p.usageNames {
		eku, ok := x509Usage(u)
		if !ok {
			return nil, a.err("usages", "%q is not one of server_auth, client_auth", u)
		}
		if !slices.Contains(p.ext, eku) {
			p.ext = append(p.ext, eku)
		}
	}
	p.keyType = a.strOr("key_type", "ecdsa")
	defDays := 825
	if p.isCA {
		defDays = 3650
	}
	days := a.integer("validity_days", defDays)
	renew := a.integer("renew_before_days", 30)
	if days <= 0 {
		return nil, a.err("validity_days", "must be positive, got %d", days)
	}
	if renew < 0 {
		return nil, a.err("renew_before_days", "must not be negative, got %d", renew)
	}
	if renew >= days {
		// Otherwise every run would find a fresh certificate inside the margin.
		return nil, a.err("renew_before_days", "%d must be less than validity_days %d", renew, days)
	}
	p.validity = time.Duration(days) * 24 * time.Hour
	p.renewBefore = time.Duration(renew) * 24 * time.Hour
	return p, nil
}

// Run checks the files and regenerates them when needed.
func (m X509) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	p, err := x509ParseArgs(args)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	check := env != nil && env.Check
	if !check {
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return nil, fmt.Errorf("x509: %w", err)
		}
		unlock, err := x509Flock(ctx, filepath.Join(p.dir, x509LockFile))
		if err != nil {
			return nil, fmt.Errorf("x509: lock %s: %w", p.dir, err)
		}
		defer unlock()
	}
	res, prev, err := x509Apply(p, time.Now(), check)
	if err == nil && env != nil && env.Diff && res.Changed && !strings.HasPrefix(res.Data["changed_reason"].(string), "key mode") {
		res.Diff = x509Diff(p, prev, res, check)
	}
	return res, err
}

type x509CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// x509Apply decides and (outside check mode) regenerates; it also returns
// the certificate found before, for --diff.
func x509Apply(p *x509Params, now time.Time, check bool) (*Result, *x509.Certificate, error) {
	var ca *x509CA
	if p.caName != "" {
		var err error
		ca, err = x509LoadCA(p.dir, p.caName)
		if err != nil {
			if check && errors.Is(err, fs.ErrNotExist) {
				// The CA task earlier in the play would create it.
				return x509Result(p, nil, true, "CA "+p.caName+" missing (created earlier in this run)", true), nil, nil
			}
			return nil, nil, fmt.Errorf("x509 %s: %w", p.name, err)
		}
	}
	cur, reason := x509Inspect(p, ca, now)
	if reason == "" {
		// Keys stay 0600 even if someone loosened them by hand.
		fi, err := os.Stat(p.keyPath())
		if err != nil {
			return nil, nil, fmt.Errorf("x509: %w", err)
		}
		if fi.Mode().Perm() != 0o600 {
			reason := fmt.Sprintf("key mode %04o -> 0600", fi.Mode().Perm())
			if !check {
				if err := os.Chmod(p.keyPath(), 0o600); err != nil {
					return nil, nil, fmt.Errorf("x509: %w", err)
				}
			}
			return x509Result(p, cur, true, reason, check), cur, nil
		}
		return x509Result(p, cur, false, "", check), cur, nil
	}
	if check {
		return x509Result(p, cur, true, reason, check), cur, nil
	}
	cert, err := x509Generate(p, ca, now)
	if err != nil {
		return nil, nil, fmt.Errorf("x509 %s: %w", p.name, err)
	}
	return x509Result(p, cert, true, reason, check), cur, nil
}

// x509Diff shows what a regeneration changes, as a diff of two short
// descriptions (the certificate itself is noise to a reader).
func x509Diff(p *x509Params, prev *x509.Certificate, res *Result, check bool) string {
	before := ""
	if prev != nil {
		before = x509DescribeCert(prev, p.caName)
	}
	after := x509Describe(p.cn, p.org, p.dns, x509IPStrings(p.ips), p.usageNames, p.isCA, p.caName, p.keyType)
	if check {
		after += fmt.Sprintf("not_after: (%d days after generation)\n", int(p.validity.Hours()/24))
	} else {
		after += fmt.Sprintf("not_after: %s\n", res.Data["not_after"])
	}
	var a []string
	if before != "" {
		a = difflib.SplitLines(strings.TrimSuffix(before, "\n"))
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: a, B: difflib.SplitLines(strings.TrimSuffix(after, "\n")),
		FromFile: p.certPath() + " (before)", ToFile: p.certPath() + " (after)", Context: 10,
	})
	if err != nil {
		return ""
	}
	return text
}

func x509Describe(cn string, org, dns, ips, usages []string, isCA bool, issuer, keyType string) string {
	sorted := func(v []string) string {
		if len(v) == 0 {
			return "(none)"
		}
		return strings.Join(slices.Sorted(slices.Values(v)), ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "common_name: %s\n", cn)
	fmt.Fprintf(&b, "organization: %s\n", sorted(org))
	fmt.Fprintf(&b, "dns_names: %s\n", sorted(dns))
	fmt.Fprintf(&b, "ip_addresses: %s\n", sorted(ips))
	fmt.Fprintf(&b, "usages: %s\n", sorted(usages))
	fmt.Fprintf(&b, "ca: %v\n", isCA)
	if issuer == "" {
		issuer = "(self-signed)"
	}
	fmt.Fprintf(&b, "issuer: %s\n", issuer)
	fmt.Fprintf(&b, "key_type: %s\n", keyType)
	return b.String()
}

func x509DescribeCert(cert *x509.Certificate, caName string) string {
	keyType := "rsa"
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); ok {
		keyType = "ecdsa"
	}
	issuer := caName
	if cert.IsCA {
		issuer = ""
	}
	return x509Describe(cert.Subject.CommonName, cert.Subject.Organization, cert.DNSNames, x509IPStrings(cert.IPAddresses),
		x509EKUNames(cert.ExtKeyUsage), cert.IsCA, issuer, keyType) +
		fmt.Sprintf("not_after: %s\n", cert.NotAfter.UTC().Format(time.RFC3339))
}

func x509Result(p *x509Params, cert *x509.Certificate, changed bool, reason string, check bool) *Result {
	data := map[string]any{
		"path":           p.dir,
		"cert":           p.certPath(),
		"key":            p.keyPath(),
		"changed_reason": reason,
		"serial":         "",
		"not_after":      "",
	}
	if p.caName != "" {
		data["ca_cert"] = filepath.Join(p.dir, p.caName+".pem")
	}
	// Under check mode a predicted regeneration still shows the current
	// certificate's serial: the new one does not exist.
	if cert != nil {
		data["serial"] = cert.SerialNumber.Text(16)
		data["not_after"] = cert.NotAfter.UTC().Format(time.RFC3339)
		sum := sha256.Sum256(cert.Raw)
		data["fingerprint_sha256"] = hex.EncodeToString(sum[:])
	}
	msg := p.name + " up to date"
	if changed {
		verb := "generated"
		if strings.HasPrefix(reason, "key mode") {
			verb = "fixed"
		}
		if check {
			verb = "would be " + verb
		}
		msg = fmt.Sprintf("%s %s: %s", p.name, verb, reason)
	}
	return &Result{Changed: changed, Msg: msg, Data: data}
}

func x509LoadCA(dir, name string) (*x509CA, error) {
	cert, err := x509ReadCert(filepath.Join(dir, name+".pem"))
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	key, err := x509ReadKey(filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if !x509KeyMatches(cert, key) {
		return nil, fmt.Errorf("CA %s: key does not match certificate", name)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s.pem is not a CA certificate", name)
	}
	return &x509CA{cert: cert, key: key}, nil
}

// x509Inspect returns the current certificate (if readable) and why it must
// be regenerated ("" when it is fine).
func x509Inspect(p *x509Params, ca *x509CA, now time.Time) (*x509.Certificate, string) {
	cert, err := x509ReadCert(p.certPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "missing"
	}
	if err != nil {
		return nil, "unreadable certificate"
	}
	key, err := x509ReadKey(p.keyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return cert, "key missing"
	}
	if err != nil {
		return cert, "unreadable key"
	}
	if !x509KeyMatches(cert, key) {
		return cert, "key does not match certificate"
	}
	if x509KeyType(key) != p.keyType {
		return cert, "key type changed"
	}
	if cert.IsCA != p.isCA {
		return cert, "CA flag changed"
	}
	if cert.Subject.CommonName != p.cn {
		return cert, "common name changed"
	}
	if !x509SameSet(cert.Subject.Organization, p.org) {
		return cert, "organization changed"
	}
	if !x509SameSet(cert.DNSNames, p.dns) {
		return cert, "dns_names changed"
	}
	if !x509SameSet(x509IPStrings(cert.IPAddresses), x509IPStrings(p.ips)) {
		return cert, "ip_addresses changed"
	}
	if !x509SameSet(x509EKUNames(cert.ExtKeyUsage), p.usageNames) {
		return cert, "usages changed"
	}
	if ca != nil {
		if !bytes.Equal(cert.RawIssuer, ca.cert.RawSubject) || cert.CheckSignatureFrom(ca.cert) != nil {
			return cert, "not signed by current CA " + p.caName
		}
	} else if cert.CheckSignatureFrom(cert) != nil {
		return cert, "not self-signed"
	}
	if !now.Before(cert.NotAfter) {
		return cert, "expired"
	}
	if now.Add(p.renewBefore).After(cert.NotAfter) {
		return cert, fmt.Sprintf("expires within %d days", int(p.renewBefore.Hours()/24))
	}
	return cert, ""
}

func x509Generate(p *x509Params, ca *x509CA, now time.Time) (*x509.Certificate, error) {
	key, keyPEM, err := x509NewKey(p.keyType)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), // never zero
		Subject:      pkix.Name{CommonName: p.cn, Organization: p.org},
		DNSNames:     p.dns,
		IPAddresses:  p.ips,
		ExtKeyUsage:  p.ext,
		// Backdated so hosts whose clock lags the control machine's a little
		// accept it at once.
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              now.Add(p.validity).UTC(),
		BasicConstraintsValid: true,
		IsCA:                  p.isCA,
	}
	parent, signer := tmpl, crypto.Signer(key)
	if p.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		parent, signer = ca.cert, ca.key
		if tmpl.NotAfter.After(ca.cert.NotAfter) {
			tmpl.NotAfter = ca.cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Both files are complete on disk before either is renamed; the key goes
	// first so a crash in between leaves a new key beside an old certificate,
	// which the next run detects as a mismatch, never a certificate without
	// its key.
	keyTmp, err := atomicfile.WriteTemp(p.dir, p.name+"-key.pem", keyPEM, 0o600)
	if err != nil {
		return nil, err
	}
	certTmp, err := atomicfile.WriteTemp(p.dir, p.name+".pem", certPEM, 0o644)
	if err != nil {
		os.Remove(keyTmp)
		return nil, err
	}
	if err := os.Rename(keyTmp, p.keyPath()); err != nil {
		os.Remove(keyTmp)
		os.Remove(certTmp)
		return nil, err
	}
	if err := os.Rename(certTmp, p.certPath()); err != nil {
		os.Remove(certTmp)
		return nil, err
	}
	if d, err := os.Open(p.dir); err == nil {
		_ = d.Sync() // persist the renames; best effort on filesystems without dir fsync
		d.Close()
	}
	return cert, nil
}
