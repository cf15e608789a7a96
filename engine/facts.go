package engine

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"gokube/connection"
)

// factsScript gathers everything in one round trip; sections are parsed in Go.
const factsScript = `echo '##os-release'; cat /etc/os-release 2>/dev/null
echo '##hostname'; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
echo '##fqdn'; hostname -f 2>/dev/null || hostname
echo '##addr'; ip -o -4 addr 2>/dev/null
echo '##route'; ip route show default 2>/dev/null
echo '##nproc'; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo '##meminfo'; cat /proc/meminfo 2>/dev/null
echo '##arch'; uname -m
echo '##kernel'; uname -r
echo '##init'; cat /proc/1/comm 2>/dev/null
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
	networkFacts(f, sec["addr"], sec["route"])
	if n, err := strconv.Atoi(first("nproc")); err == nil {
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
