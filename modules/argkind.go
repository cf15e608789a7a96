package modules

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kind is a declared rule on an argument's value beyond its type (a mode,
// a regular expression, a port, a URL...). It is checked by checkArgs, so
// the same rule refuses a literal value when the task is loaded (before
// any host is contacted) and a rendered one when the module runs; a module
// declares the rule instead of coding it. For a List argument the rule
// applies to each element. A value containing "{{" is left for run time.
type Kind int

const (
	// Plain has no rule beyond the type.
	Plain Kind = iota
	// Mode is a permission mode: octal (0644 or "0644") or symbolic
	// ("u=rw,g=r,o=").
	Mode
	// ModeOrPreserve is a Mode, or "preserve" (copy and template: the
	// mode of the source file).
	ModeOrPreserve
	// Regexp is a Go regular expression.
	Regexp
	// Port is a TCP/UDP port, 1-65535.
	Port
	// URL is an absolute http:// or https:// URL with a host.
	URL
	// URLOrFile is a URL, or file:// with an absolute path.
	URLOrFile
	// HTTPStatus is an HTTP status code (100-599), or a list of them
	// (a list, or "200,201").
	HTTPStatus
	// Checksum is ALGO:HEX with ALGO sha256 or sha1 and the digest's
	// length, or ALGO:file:///ABS/SUMS (a checksum list).
	Checksum
	// Validate is a command containing %s (the temporary file).
	Validate
	// HexID is a hexadecimal number (an etcd member id).
	HexID
)

// kindRule is a Kind's name for `gokube doc` and its check: why the scalar
// s is not a valid value, or "".
type kindRule struct {
	name  string
	check func(s string) string
}

// rule returns the kind's rule.
func (k Kind) rule() kindRule {
	switch k {
	case Mode:
		return kindRule{"mode (octal or symbolic)", checkModeText}
	case ModeOrPreserve:
		return kindRule{"mode (octal, symbolic or preserve)", checkModeOrPreserve}
	case Regexp:
		return kindRule{"regular expression", checkRegexp}
	case Port:
		return kindRule{"port (1-65535)", checkPort}
	case URL:
		return kindRule{"http(s) URL", checkHTTPURL}
	case URLOrFile:
		return kindRule{"http(s) or file:// URL", checkURLOrFile}
	case HTTPStatus:
		return kindRule{"HTTP status code(s)", checkHTTPStatus}
	case Checksum:
		return kindRule{"checksum (sha256:<hex>)", checkChecksum}
	case Validate:
		return kindRule{"command with %s", checkValidateText}
	case HexID:
		return kindRule{"hexadecimal id", checkHexID}
	}
	return kindRule{"", func(string) string { return "" }}
}

// String names the kind for `gokube doc` ("" for Plain).
func (k Kind) String() string { return k.rule().name }

// checkKind returns why v breaks arg's Kind, or "". v already has arg's
// Type. With templated set, a value (or list element) containing "{{" is
// not checked: it is rendered later and checked again.
func checkKind(arg Arg, v any, templated bool) string {
	if arg.Kind == Plain {
		return ""
	}
	skip := func(s string) bool { return templated && strings.Contains(s, "{{") }
	rule := arg.Kind.rule()
	// An integer mode is already octal-decoded by YAML (mode: 0644 is 420).
	if arg.Kind == Mode || arg.Kind == ModeOrPreserve {
		if n, ok := v.(int); ok {
			if n < 0 || n > 0o7777 {
				return fmt.Sprintf("mode %o (octal) is out of range (0000-7777)", n)
			}
			return ""
		}
	}
	var items []string
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			s, ok := toStr(e)
			if !ok {
				return "want a list of scalars, got an element that is " + KindOf(e)
			}
			items = append(items, s)
		}
		if len(items) == 0 && arg.Kind == HTTPStatus {
			return "no status code given"
		}
	case []string:
		items = t
	case map[string]any:
		// A Map argument's rule applies to each value (kube_verify's
		// apiservers: master name -> URL).
		if arg.Type != Map {
			return "want a scalar or a list, got a mapping"
		}
		for k, e := range t {
			s, ok := toStr(e)
			if !ok {
				return fmt.Sprintf("%s: want a scalar, got %s", k, KindOf(e))
			}
			items = append(items, s)
		}
	default:
		s, ok := toStr(v)
		if !ok {
			return "want a scalar or a list, got " + KindOf(v)
		}
		if strings.TrimSpace(s) == "" || skip(s) {
			return "" // unset, or rendered later
		}
		if arg.Type == List || arg.Kind == HTTPStatus {
			// "a,b" is a list, as toList reads it.
			for _, e := range strings.Split(s, ",") {
				if e = strings.TrimSpace(e); e != "" {
					items = append(items, e)
				}
			}
		} else {
			items = []string{s}
		}
	}
	sort.Strings(items) // a deterministic message for a Map
	for _, s := range items {
		if skip(s) {
			continue
		}
		if msg := rule.check(s); msg != "" {
			return msg
		}
	}
	return ""
}

func checkModeText(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "empty mode"
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
		if err != nil || n > 0o7777 {
			return fmt.Sprintf("%q is not an octal mode (like \"0644\")", s)
		}
		return ""
	}
	if _, err := applySymbolic(0, false, s); err != nil {
		return fmt.Sprintf("want an octal mode like \"0644\" or a symbolic one like \"u=rw,g=r,o=\": %v", err)
	}
	return ""
}

func checkModeOrPreserve(s string) string {
	if strings.TrimSpace(s) == "preserve" {
		return ""
	}
	return checkModeText(s)
}

func checkRegexp(s string) string {
	if _, err := regexp.Compile(s); err != nil {
		return fmt.Sprintf("not a regular expression: %v", err)
	}
	return ""
}

func checkPort(s string) string {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%s is not a port (1-65535)", s)
	}
	return ""
}

func checkHTTPURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("want an http:// or https:// URL with a host, got %q", s)
	}
	return ""
}

func checkURLOrFile(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err == nil && u.Scheme == "file" {
		if !path.IsAbs(u.Path) {
			return fmt.Sprintf("a file:// URL needs an absolute path, got %q", s)
		}
		return ""
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("want an http://, https:// or file:// URL, got %q", s)
	}
	return ""
}

func checkHTTPStatus(s string) string {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return fmt.Sprintf("%s is not an HTTP status code (100-599)", s)
	}
	return ""
}

func checkChecksum(s string) string {
	s = strings.TrimSpace(s)
	algo, sum, ok := strings.Cut(s, ":")
	algo = strings.ToLower(algo)
	if !ok || (algo != "sha256" && algo != "sha1") {
		return fmt.Sprintf("want sha256:<hex> (or sha1:<hex>), got %q", s)
	}
	if rest, ok := strings.CutPrefix(sum, "file://"); ok {
		if !path.IsAbs(rest) {
			return fmt.Sprintf("checksum list file://%s: want an absolute path", rest)
		}
		return ""
	}
	sum = strings.ToLower(strings.TrimSpace(sum))
	want := 64
	if algo == "sha1" {
		want = 40
	}
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != want {
		return fmt.Sprintf("%s digest must be %d hex digits, got %q", algo, want, sum)
	}
	return ""
}

func checkValidateText(s string) string {
	if !strings.Contains(s, "%s") {
		return "must contain %s (replaced by the temporary file)"
	}
	return ""
}

func checkHexID(s string) string {
	if _, err := strconv.ParseUint(strings.TrimSpace(s), 16, 64); err != nil {
		return fmt.Sprintf("%q is not a hexadecimal id", s)
	}
	return ""
}
