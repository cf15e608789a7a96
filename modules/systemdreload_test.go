package modules

import "testing"

// TestReloadNeeded judges probe outputs: any doubt reloads.
func TestReloadNeeded(t *testing.T) {
	head := func(needs, since, inputs string) string {
		return reloadNeedMark + "\n" + needs + reloadSinceMark + "\n" + since + reloadInputsMark + "\n" + inputs
	}
	unit := reloadUnitMark + "\nId=a.service\nLoadState=loaded\n"
	cases := []struct {
		name, out string
		need      bool
	}{
		{"nothing changed", head("no\nno\n", "UnitsLoadTimestamp=@200\n", "189 /etc/systemd/system\n50 /etc/fstab\n") + unit, false},
		{"a unit changed", head("no\nyes\n", "UnitsLoadTimestamp=@200\n", "99 /etc/systemd/system\n") + unit, true},
		{"within the margin", head("no\n", "UnitsLoadTimestamp=@200\n", "190 /etc/systemd/system\n") + unit, true},
		{"input newer", head("no\n", "UnitsLoadTimestamp=@200\n", "99 /etc/fstab\n201 /etc/systemd/system.conf\n"), true},
		{"no answer", head("", "UnitsLoadTimestamp=@200\n", "99 /etc/fstab\n"), true},
		{"no timestamp", head("no\n", "", "99 /etc/fstab\n"), true},
		{"garbled timestamp", head("no\n", "UnitsLoadTimestamp=Mon 2026\n", "99 /etc/fstab\n"), true},
		{"empty", "", true},
	}
	for _, c := range cases {
		need, why, u := reloadNeeded([]byte(c.out))
		if need != c.need {
			t.Errorf("%s: need=%v (%s), want %v", c.name, need, why, c.need)
		}
		if c.name == "nothing changed" && parseKV(u)["LoadState"] != "loaded" {
			t.Errorf("unit part lost: %q", u)
		}
	}
}
