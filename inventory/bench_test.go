package inventory

import (
	"fmt"
	"strings"
	"testing"
)

// bigINI builds an inventory of n hosts: 10 groups of n/10 written one
// host per line with inline vars, a children group over them and vars at
// every level, close to a large kubespray inventory.
func bigINI(n int) string {
	var b strings.Builder
	for g := range 10 {
		fmt.Fprintf(&b, "[g%d]\n", g)
		for i := range n / 10 {
			fmt.Fprintf(&b, "node-%d-%d ansible_host=10.%d.%d.%d ip=10.%d.%d.%d idx=%d\n", g, i, g, i/256, i%256, g, i/256, i%256, i)
		}
		fmt.Fprintf(&b, "[g%d:vars]\nlevel=g%d\nzone=z%d\n", g, g, g%3)
	}
	b.WriteString("[cluster:children]\n")
	for g := range 10 {
		fmt.Fprintf(&b, "g%d\n", g)
	}
	b.WriteString("[cluster:vars]\nlevel=cluster\nkube_version=v1.30.2\n[all:vars]\nansible_user=root\n")
	for i := range 30 {
		fmt.Fprintf(&b, "common_%d=value-%d\n", i, i)
	}
	return b.String()
}

func TestBigInventory(t *testing.T) {
	inv := mustParse(t, "big.cfg", bigINI(1000))
	if got := len(inv.HostNames()); got != 1000 {
		t.Fatalf("%d hosts", got)
	}
	m, err := inv.Match("cluster:&g3:!node-3-1*")
	if err != nil || len(m) != 100-11 {
		t.Fatalf("Match = %d hosts, %v", len(m), err)
	}
	h, _ := inv.Host("node-7-42")
	if h.Vars["level"] != "g7" || h.Vars["idx"] != 42 || h.Vars["common_29"] != "value-29" {
		t.Fatalf("vars = %v", h.Vars)
	}
}

func BenchmarkParse1000(b *testing.B) {
	src := []byte(bigINI(1000))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse("big.cfg", src, LoadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch1000(b *testing.B) {
	inv := mustParse(b, "big.cfg", bigINI(1000))
	for b.Loop() {
		if _, err := inv.Match("cluster:&g3:!node-3-1*"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHost1000(b *testing.B) {
	inv := mustParse(b, "big.cfg", bigINI(1000))
	for b.Loop() {
		inv.Host("node-5-50")
	}
}

func BenchmarkListJSON1000(b *testing.B) {
	inv := mustParse(b, "big.cfg", bigINI(1000))
	for b.Loop() {
		if _, err := inv.ListJSON(); err != nil {
			b.Fatal(err)
		}
	}
}
