package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Defaults of a lab. The address range is the only network the lab ever
// touches: it creates a bridge with the gateway address (.1) and gives host i
// the address .(10+i).
const (
	DefaultName     = "gk"
	DefaultSubnet   = "10.231.0.0/24"
	DefaultStateDir = "/var/lib/gokube/lab"
	DefaultImageDir = "/var/lib/gokube/images"

	// firstHostOffset is added to the host index to get the last octet(s)
	// of its address: host 1 is .11, so .2-.10 stay free for other uses
	// (a load balancer VIP, a DNS server on the gateway side).
	firstHostOffset = 10

	// maxIfnameMachine is how much of a machine name survives in the
	// host-side veth name: the kernel allows 15 characters and nspawn
	// prepends "vb-". Longer names get cut (or hashed, depending on the
	// systemd naming scheme), and cut names of two hosts could clash.
	maxIfnameMachine = 12

	// delayPortBase + index is the port on the gateway address where the
	// delaying forwarder listens for a host when `lab delay` is active.
	delayPortBase = 22000
)

// nameRE keeps lab names short and free of '-': the machine name
// gk-<name>-<i> can then be parsed back unambiguously, so two labs never
// produce the same machine or veth name.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)

// Config describes a lab. Zero fields take the defaults above.
type Config struct {
	// Name of the lab: hosts are <Name>-1..N.
	Name string
	// Dir holds the lab's state (key, known_hosts, inventory, disks);
	// default /var/lib/gokube/lab/<Name>.
	Dir string
	// Subnet is the lab's address range (IPv4 CIDR, at most /24 wide
	// enough for the hosts you want).
	Subnet string
	// ImageDir caches base images by recipe hash.
	ImageDir string
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(DefaultStateDir, c.Name)
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if c.ImageDir == "" {
		c.ImageDir = DefaultImageDir
	}
	// Paths go into mount options, nspawn arguments and the inventory:
	// they must not depend on the working directory.
	if a, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = a
	}
	if a, err := filepath.Abs(c.ImageDir); err == nil {
		c.ImageDir = a
	}
	return c
}

func (c Config) validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("lab name %q: want 1-6 lower-case letters or digits, starting with a letter (no '-', so machine names stay unambiguous)", c.Name)
	}
	if _, err := parseSubnet(c.Subnet); err != nil {
		return err
	}
	// Both end up in overlayfs mount options (comma and colon separated)
	// and in inventory lines (space separated).
	for _, p := range []string{c.Dir, c.ImageDir} {
		if strings.ContainsAny(p, ",: \t\n'\"\\") {
			return fmt.Errorf("path %q: must not contain commas, colons, spaces or quotes", p)
		}
	}
	return nil
}

func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("subnet %q: only IPv4 is supported", s)
	}
	if p.Bits() > 28 {
		return netip.Prefix{}, fmt.Errorf("subnet %q: too small, want /28 or wider", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("subnet %q: host bits set, did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// gatewayAddr is the bridge's address: the first address of the subnet.
func gatewayAddr(p netip.Prefix) netip.Addr {
	return p.Addr().Next()
}

// hostAddr is the address of host i (1-based).
func hostAddr(p netip.Prefix, i int) (netip.Addr, error) {
	if i < 1 {
		return netip.Addr{}, fmt.Errorf("host index %d: must be at least 1", i)
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(firstHostOffset + i)
	out := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	// The last address of the subnet is its broadcast address.
	if !p.Contains(out) || out == lastAddr(p) {
		return netip.Addr{}, fmt.Errorf("host %d does not fit in subnet %s (room for %d hosts)", i, p, maxHosts(p))
	}
	return out, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func maxHosts(p netip.Prefix) int {
	return (1 << (32 - p.Bits())) - 2 - firstHostOffset
}

// hostName is the inventory name of host i.
func hostName(lab string, i int) string { return lab + "-" + strconv.Itoa(i) }

// machineName is the nspawn machine name of host i. It must fit in
// maxIfnameMachine characters so the veth "vb-<machine>" is never cut.
func machineName(lab string, i int) (string, error) {
	m := "gk-" + lab + "-" + strconv.Itoa(i)
	if len(m) > maxIfnameMachine {
		return "", fmt.Errorf("machine name %q is longer than %d characters: its veth name would be cut and could clash; use a shorter lab name", m, maxIfnameMachine)
	}
	return m, nil
}

// vethName is the host-side interface nspawn creates for a machine on a
// bridge (--network-bridge): "vb-" plus the machine name.
func vethName(machine string) string { return "vb-" + machine }

// bridgeName is the lab's bridge.
func bridgeName(lab string) string { return "gkbr-" + lab }
