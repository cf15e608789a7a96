package engine

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// ansibleFuncs are the helpers and overrides that give templates the
// semantics an Ansible user expects: comparisons that accept a number as a
// numeric string (-e app_port=9090), one truthiness rule, paths that
// tolerate missing keys, versions compared like Ansible's version test.
func ansibleFuncs(fm template.FuncMap) {
	fm[fnPath] = pathGet
	fm[fnTruth] = truthy
	fm["not"] = func(v any) bool { return !truthy(v) }
	fm["get"] = getOr
	fm["eq"] = func(a any, bs ...any) (bool, error) {
		if len(bs) == 0 {
			return false, errors.New("eq: missing argument for comparison")
		}
		for _, b := range bs {
			if equalVals(a, b) {
				return true, nil
			}
		}
		return false, nil
	}
	fm["ne"] = func(a, b any) bool { return !equalVals(a, b) }
	fm["lt"] = orderFunc("lt", func(c int) bool { return c < 0 })
	fm["le"] = orderFunc("le", func(c int) bool { return c <= 0 })
	fm["gt"] = orderFunc("gt", func(c int) bool { return c > 0 })
	fm["ge"] = orderFunc("ge", func(c int) bool { return c >= 0 })
	fm["version"] = versionTest
}

// pathGet follows keys through nested maps; a missing key or a nil on the
// way gives nil (the caller is default, coalesce, empty or get).
func pathGet(v any, keys ...string) (any, error) {
	for _, k := range keys {
		if v == nil {
			return nil, nil
		}
		if m, ok := v.(map[string]any); ok {
			v = m[k]
			continue
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("cannot read key %q of a %s", k, kindName(v))
		}
		e := rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()))
		if !e.IsValid() {
			return nil, nil
		}
		v = e.Interface()
	}
	return v, nil
}

// getOr is `get OBJ KEY... DEFAULT`: the value at the keys, or DEFAULT
// when a key is missing or the value is nil. Keys are separate arguments
// (host names contain dots). With one key and no default it is sprig's
// get: the value, or "" when the key is missing.
func getOr(v any, args ...any) (any, error) {
	switch len(args) {
	case 0:
		return nil, errors.New(`get wants an object, keys and a default: get .item "shell" "/bin/bash"`)
	case 1:
		got, err := pathGet(v, fmt.Sprint(args[0]))
		if err != nil {
			return nil, fmt.Errorf("get: %w", err)
		}
		if got == nil {
			return "", nil
		}
		return got, nil
	}
	keys := make([]string, len(args)-1)
	for i, k := range args[:len(args)-1] {
		keys[i] = fmt.Sprint(k)
	}
	got, err := pathGet(v, keys...)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if got == nil {
		return args[len(args)-1], nil
	}
	return got, nil
}

func kindName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case []any, []string:
		return "list"
	case bool:
		return "boolean"
	}
	if _, ok := number(v); ok {
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// number reads an actual number (not a string), exactly: etcd member ids
// are uint64 values past float64's precision.
func number(v any) (*big.Float, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return new(big.Float).SetInt64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return new(big.Float).SetUint64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		if f := rv.Float(); !math.IsNaN(f) {
			return new(big.Float).SetFloat64(f), true
		}
	}
	return nil, false
}

func numericString(v any) (*big.Float, bool) {
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	f, ok := new(big.Float).SetPrec(256).SetString(strings.TrimSpace(s))
	if !ok || f.IsInf() {
		return nil, false
	}
	return f, true
}

// numCompare compares a and b as numbers when at least one is a number
// and the other a number or a numeric string: -e values are strings.
func numCompare(a, b any) (int, bool) {
	fa, na := number(a)
	fb, nb := number(b)
	if !na && !nb {
		return 0, false
	}
	if !na {
		if fa, na = numericString(a); !na {
			return 0, false
		}
	}
	if !nb {
		if fb, nb = numericString(b); !nb {
			return 0, false
		}
	}
	return fa.Cmp(fb), true
}

func equalVals(a, b any) bool {
	if c, ok := numCompare(a, b); ok {
		return c == 0
	}
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if sa, ok := a.(string); ok {
		sb, ok := b.(string)
		return ok && sa == sb
	}
	return reflect.DeepEqual(a, b)
}

func orderFunc(name string, ok func(int) bool) func(a, b any) (bool, error) {
	return func(a, b any) (bool, error) {
		c, err := compareVals(a, b)
		if err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
		return ok(c), nil
	}
}

func compareVals(a, b any) (int, error) {
	if c, ok := numCompare(a, b); ok {
		return c, nil
	}
	sa, oka := a.(string)
	sb, okb := b.(string)
	if oka && okb {
		return strings.Compare(sa, sb), nil
	}
	return 0, fmt.Errorf("cannot compare %s %s with %s %s; convert first, e.g. (atoi .x) for a number or (toString .x) for a string",
		kindName(a), short(a), kindName(b), short(b))
}

func short(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

func cmp3(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// versionTest is Ansible's `v is version(ref, op)` written
// `version V OP REF` (OP: < <= > >= == != or lt le gt ge eq ne), with an
// optional mode "loose" (default) or "strict". Loose splits a version into
// numbers and words ("4.19.0-25-amd64" < "5.10"), so a kernel's suffix is
// not a pre-release the way semverCompare reads it.
func versionTest(v any, op string, ref any, mode ...string) (bool, error) {
	m := "loose"
	if len(mode) > 0 {
		m = mode[0]
	}
	var c int
	switch m {
	case "loose":
		c = looseCompare(fmt.Sprint(v), fmt.Sprint(ref))
	case "strict":
		a, err := strictVersion(fmt.Sprint(v))
		if err != nil {
			return false, err
		}
		b, err := strictVersion(fmt.Sprint(ref))
		if err != nil {
			return false, err
		}
		c = compareParts(a, b)
	default:
		return false, fmt.Errorf("version: mode %q is not loose or strict", m)
	}
	switch op {
	case "<", "lt":
		return c < 0, nil
	case "<=", "le":
		return c <= 0, nil
	case ">", "gt":
		return c > 0, nil
	case ">=", "ge":
		return c >= 0, nil
	case "==", "=", "eq":
		return c == 0, nil
	case "!=", "<>", "ne":
		return c != 0, nil
	}
	return false, fmt.Errorf("version: operator %q is not one of < <= > >= == != (or lt le gt ge eq ne)", op)
}

var looseRe = regexp.MustCompile(`\d+|[A-Za-z]+`)

// looseCompare follows Python's LooseVersion: runs of digits compare as
// numbers, runs of letters as strings, separators are dropped; a number
// sorts after a word at the same place (1.0 > 1.0rc1 is not claimed: both
// are ordered by their parts).
func looseCompare(a, b string) int {
	return compareParts(looseParts(a), looseParts(b))
}

func looseParts(s string) []any {
	var out []any
	for _, p := range looseRe.FindAllString(strings.TrimPrefix(strings.TrimSpace(s), "v"), -1) {
		if n, err := strconv.ParseInt(p, 10, 64); err == nil {
			out = append(out, n)
		} else {
			out = append(out, strings.ToLower(p))
		}
	}
	return out
}

var strictRe = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$`)

// strictVersion follows Python's StrictVersion: N.N[.N][(a|b)N].
func strictVersion(s string) ([]any, error) {
	m := strictRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return nil, fmt.Errorf("version: %q is not a strict version (N.N[.N][aN|bN])", s)
	}
	out := make([]any, 0, 5)
	for _, x := range m[1:4] {
		n, _ := strconv.ParseInt(x, 10, 64) // "" (no patch) is 0
		out = append(out, n)
	}
	// A release sorts after its pre-releases: "final" > "b" > "a".
	if m[4] == "" {
		out = append(out, "final", int64(0))
	} else {
		n, _ := strconv.ParseInt(m[5], 10, 64)
		out = append(out, m[4], n)
	}
	return out, nil
}

func compareParts(a, b []any) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		na, aNum := a[i].(int64)
		nb, bNum := b[i].(int64)
		switch {
		case aNum && bNum:
			if c := cmp3(na, nb); c != 0 {
				return c
			}
		case aNum:
			return 1
		case bNum:
			return -1
		default:
			if c := strings.Compare(a[i].(string), b[i].(string)); c != 0 {
				return c
			}
		}
	}
	return cmp3(int64(len(a)), int64(len(b)))
}
