package modules

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Unit probes of a batch share one systemctl show: each probe declares its
// unit on a comment line and asks gk_show, which a batch prelude
// (unitPrelude) answers from the one call's output and which otherwise
// runs its own systemctl show. A process costs 10-30 ms on a busy host, and
// a role that starts four units asked systemd four times.

// unitDecl starts the comment line by which a unit probe declares its unit
// (base64).
const unitDecl = "# gokube-probe-unit "

// unitFallback defines gk_show unless a batch prelude did.
const unitFallback = `command -v gk_show >/dev/null 2>&1 || gk_show() { systemctl show -p ` + systemdProps + ` -- "$1"; }
`

// probeShowScript is showScript as a probe: declared for the batch.
func probeShowScript(name string) string {
	return unitDecl + base64.StdEncoding.EncodeToString([]byte(name)) + "\n" + unitFallback + "gk_show " + shq(name) + "\n"
}

// unitDecls returns the units a batch's probes declared, in order, without
// repeats.
func unitDecls(batch string) (names []string, decls int) {
	seen := map[string]bool{}
	for _, line := range strings.Split(batch, "\n") {
		rest, ok := strings.CutPrefix(line, unitDecl)
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(raw) == 0 || strings.ContainsAny(string(raw), "\n") {
			continue
		}
		decls++
		if !seen[string(raw)] {
			seen[string(raw)] = true
			names = append(names, string(raw))
		}
	}
	return names, decls
}

// unitPrelude is ProbePrelude's part for unit probes: one systemctl show
// for every unit of the batch, split at the blank lines between units
// (systemctl prints one block per argument, in order, a unit that does not
// exist included) into gk_u<n>; when the count of blocks is not the count
// of units, every probe asks on its own.
func unitPrelude(batch string) string {
	names, decls := unitDecls(batch)
	if decls < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("gk_uidx() { case $1 in\n")
	for i, n := range names {
		fmt.Fprintf(&b, "%s) gk_ui=%d;;\n", shq(n), i)
	}
	b.WriteString("*) gk_ui=;; esac; }\n")
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = shq(n)
	}
	fmt.Fprintf(&b, "gk_ut=$(systemctl show -p %s -- %s 2>/dev/null) || gk_ut=\n", systemdProps, strings.Join(quoted, " "))
	fmt.Fprintf(&b, `gk_un=0; gk_unl='
'
while [ -n "$gk_ut" ]; do
gk_ub=${gk_ut%%%%"$gk_unl$gk_unl"*}; eval "gk_u$gk_un=\$gk_ub"; gk_un=$((gk_un+1))
case $gk_ut in *"$gk_unl$gk_unl"*) gk_ut=${gk_ut#*"$gk_unl$gk_unl"};; *) gk_ut=;; esac
done
if [ "$gk_un" -ne %d ]; then gk_un=; fi
gk_show() { gk_uidx "$1"; if [ -n "$gk_un" ] && [ -n "$gk_ui" ]; then eval "printf '%%s\n' \"\$gk_u$gk_ui\""; else systemctl show -p %s -- "$1"; fi; }
`, len(names), systemdProps)
	return b.String()
}
