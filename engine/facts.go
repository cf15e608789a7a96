package engine

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"gokube/connection"
)

// factsScript gathers everything in one round trip; sections are parsed in
// Go. Files are read with the shell's own read and printf, not cat, uname,
// hostname or nproc: a process started on a host costs 10-30 ms on a busy
// one, and this runs on every host of every run. What only a program knows
// stays a program: the FQDN (the resolver) and the addresses and default
// route (one ip for both, through -batch). Each read has the old program
// as its fallback, for a host without the /proc file (and an ip without
// -batch, busybox's, runs twice as before).
const factsScript = `gk_r() { [ -r "$1" ] || return 1; while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done <"$1"; }
echo '##os-release'; gk_r /etc/os-release || gk_r /usr/lib/os-release
echo '##hostname'; gk_r /proc/sys/kernel/hostname || hostname
echo '##fqdn'; hostname -f 2>/dev/null || gk_r /proc/sys/kernel/hostname
echo '##addr'; ip -o -4 -batch - 2>/dev/null <<'GK_IP' || { ip -o -4 addr 2>/dev/null; ip route show default 2>/dev/null; }
addr
route show default
GK_IP
echo '##nproc'; gk_c=
if [ -r /proc/self/status ]; then while IFS= read -r l; do case $l in Cpus_allowed_list:*) gk_c=${l#*:} ;; esac; done </proc/self/status; fi
if [ -n "$gk_c" ]; then printf 'cpus %s\n' $gk_c; else nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; fi
echo '##meminfo'; gk_r /proc/meminfo
echo '##arch'; gk_r /proc/sys/kernel/arch || uname -m
echo '##kernel'; gk_r /proc/sys/kernel/osrelease || uname -r
echo '##init'; gk_r /proc/1/comm
echo '##end'
`

func gatherFacts(ctx context.Context, conn connection.Conn, become bool, buser string) (map[string]any, error) {
	res, err := conn.Run(ctx, connection.Request{Script: factsScript, ReadOnly: true, Become: become, BecomeUser: buser})
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(res.Stdout), "##end") {
		return nil, fmt.Errorf("gathering facts: unexpected output (rc %d): %s", res.RC, strings.TrimSpace(string(res.Stderr)))
	}
	return parseFacts(string(res.Stdout)), nil
}

// parseFacts turns the facts script's output into ansible_* variables and
// the ansible_facts map (same keys without the prefix).
func parseFacts(out string) map[string]any {
	sec := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "##") {
			cur = l[2:]
			continue
		}
		sec[cur] = append(sec[cur], l)
	}
	first := func(k string) string {
		if len(sec[k]) > 0 {
			return strings.TrimSpace(sec[k][0])
		}
		return ""
	}
	f := map[string]any{}
	distributionFacts(f, sec["os-release"])
	host := first("hostname")
	short, _, _ := strings.Cut(host, ".")
	f["hostname"] = short
	f["nodename"] = host
	fqdn := first("fqdn")
	if fqdn == "" {
		fqdn = host
	}
	f["fqdn"] = fqdn
	if i := strings.Index(fqdn, "."); i > 0 {
		f["domain"] = fqdn[i+1:]
	} else {
		f["domain"] = ""
	}
	// One ip prints the addresses and then the default route into the
	// addr section ("default via ..."); a route section is the older
	// script's separate ip call.
	var addrs, routes []string
	for _, l := range sec["addr"] {
		if strings.HasPrefix(l, "default ") {
			routes = append(routes, l)
		} else {
			addrs = append(addrs, l)
		}
	}
	networkFacts(f, addrs, append(routes, sec["route"]...))
	if n, ok := cpuListCount(first("nproc")); ok {
		f["processor_vcpus"] = n
		f["processor_count"] = n
	} else if n, err := strconv.Atoi(first("nproc")); err == nil {
		f["processor_vcpus"] = n
		f["processor_count"] = n
	}
	for _, l := range sec["meminfo"] {
		fs := strings.Fields(l)
		if len(fs) >= 2 {
			kb, err := strconv.Atoi(fs[1])
			if err != nil {
				continue
			}
			switch fs[0] {
			case "MemTotal:":
				f["memtotal_mb"] = kb / 1024
			case "MemFree:":
				f["memfree_mb"] = kb / 1024
			case "SwapTotal:":
				f["swaptotal_mb"] = kb / 1024
			}
		}
	}
	f["architecture"] = first("arch")
	f["machine"] = first("arch")
	f["kernel"] = first("kernel")
	initName := first("init")
	switch initName {
	case "systemd", "":
		if initName == "" {
			initName = "unknown"
		}
	case "init":
		initName = "sysvinit"
	}
	f["service_mgr"] = initName
	out2 := map[string]any{}
	for k, v := range f {
		out2["ansible_"+k] = v
	}
	out2["ansible_facts"] = f
	return out2
}

// distributionFacts: distribution, its version and release, os_family,
// from /etc/os-release lines (ID_LIKE finds the family of derivatives).
func distributionFacts(f map[string]any, lines []string) {
	osr := map[string]string{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, "=")
		if ok {
			osr[k] = strings.Trim(v, `"'`)
		}
	}
	distro := map[string]string{"debian": "Debian", "ubuntu": "Ubuntu", "centos": "CentOS", "rhel": "RedHat",
		"fedora": "Fedora", "rocky": "Rocky", "almalinux": "AlmaLinux", "alpine": "Alpine", "arch": "Archlinux",
		"opensuse-leap": "openSUSE Leap", "sles": "SLES", "amzn": "Amazon"}
	family := map[string]string{"debian": "Debian", "ubuntu": "Debian", "centos": "RedHat", "rhel": "RedHat",
		"fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat", "amzn": "RedHat", "alpine": "Alpine",
		"arch": "Archlinux", "opensuse-leap": "Suse", "sles": "Suse"}
	id := osr["ID"]
	d := distro[id]
	if d == "" {
		d = osr["NAME"]
	}
	fam := family[id]
	if fam == "" {
		for _, like := range strings.Fields(osr["ID_LIKE"]) {
			if x := family[like]; x != "" {
				fam = x
				break
			}
		}
	}
	if fam == "" {
		fam = d
	}
	ver := osr["VERSION_ID"]
	major, _, _ := strings.Cut(ver, ".")
	f["distribution"] = d
	f["distribution_version"] = ver
	f["distribution_major_version"] = major
	f["distribution_release"] = osr["VERSION_CODENAME"]
	f["os_family"] = fam
	f["system"] = "Linux"
}

// networkFacts: all_ipv4_addresses (loopback left out) and default_ipv4
// (interface, gateway and address of the default route) from `ip -o -4
// addr` and `ip route show default` lines.
func networkFacts(f map[string]any, addr, route []string) {
	var all []any
	ifaceAddr := map[string]string{}
	for _, l := range addr {
		// "2: eth0    inet 10.0.0.5/24 brd ... scope global eth0"
		fs := strings.Fields(l)
		for i := 0; i+1 < len(fs); i++ {
			if fs[i] == "inet" {
				ip, _, _ := strings.Cut(fs[i+1], "/")
				dev := strings.TrimSuffix(fs[1], ":")
				if _, ok := ifaceAddr[dev]; !ok {
					ifaceAddr[dev] = ip
				}
				if !strings.HasPrefix(ip, "127.") {
					all = append(all, ip)
				}
			}
		}
	}
	if all == nil {
		all = []any{}
	}
	f["all_ipv4_addresses"] = all
	def := map[string]any{}
	for _, l := range route {
		fs := strings.Fields(l)
		for i := 0; i+1 < len(fs); i++ {
			switch fs[i] {
			case "via":
				def["gateway"] = fs[i+1]
			case "dev":
				def["interface"] = fs[i+1]
				def["address"] = ifaceAddr[fs[i+1]]
			}
		}
		if len(def) > 0 {
			break
		}
	}
	if def["address"] == nil && len(all) > 0 {
		def["address"] = all[0]
	}
	f["default_ipv4"] = def
}

// cpuListCount counts the CPUs of "cpus 0-3,6,8-9" (Cpus_allowed_list, the
// set nproc counts: the process's affinity, so a container's share).
func cpuListCount(s string) (int, bool) {
	list, ok := strings.CutPrefix(s, "cpus ")
	if !ok {
		return 0, false
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, false
			}
		}
		n += b - a + 1
	}
	return n, n > 0
}
