package lab

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ipCmd runs iproute2's ip. The lab shells out rather than speaking
// netlink itself: the commands are few, and what they do is easy to repeat
// by hand when debugging.
func ipCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func linkExists(ctx context.Context, name string) bool {
	_, err := ipCmd(ctx, "link", "show", "dev", name)
	return err == nil
}

type ipAddrInfo struct {
	IfName   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// ensureBridge creates the lab's bridge with the gateway address, after
// checking no other interface already uses an address in the lab's subnet
// (the lab must not take over someone else's network).
func ensureBridge(ctx context.Context, br string, subnet netip.Prefix) error {
	out, err := ipCmd(ctx, "-j", "addr", "show")
	if err != nil {
		return err
	}
	var ifs []ipAddrInfo
	if err := json.Unmarshal([]byte(out), &ifs); err != nil {
		return fmt.Errorf("ip -j addr show: %w", err)
	}
	gw := gatewayAddr(subnet)
	for _, i := range ifs {
		if i.IfName == br {
			continue
		}
		for _, a := range i.AddrInfo {
			if a.Family != "inet" {
				continue
			}
			p, err := netip.ParsePrefix(a.Local + "/" + strconv.Itoa(a.PrefixLen))
			if err != nil {
				continue
			}
			if p.Overlaps(subnet) {
				return fmt.Errorf("subnet %s overlaps %s on interface %s: choose another with --subnet", subnet, p, i.IfName)
			}
		}
	}
	if !linkExists(ctx, br) {
		if _, err := ipCmd(ctx, "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, so cutting a host (taking its veth off) could change the
	// gateway's MAC under every other host and break them too. A fixed
	// address keeps faults confined to the host they are meant for.
	mac := bridgeMAC(br)
	if cur, err := os.ReadFile("/sys/class/net/" + br + "/address"); err != nil || strings.TrimSpace(string(cur)) != mac {
		if _, err := ipCmd(ctx, "link", "set", "dev", br, "address", mac); err != nil {
			return err
		}
	}
	want := fmt.Sprintf("%s/%d", gw, subnet.Bits())
	has := false
	for _, i := range ifs {
		if i.IfName != br {
			continue
		}
		for _, a := range i.AddrInfo {
			if a.Family == "inet" && fmt.Sprintf("%s/%d", a.Local, a.PrefixLen) == want {
				has = true
			}
		}
	}
	if !has {
		if _, err := ipCmd(ctx, "addr", "add", want, "dev", br); err != nil {
			return err
		}
	}
	_, err = ipCmd(ctx, "link", "set", br, "up")
	return err
}

// bridgeMAC is a locally administered unicast address derived from the
// bridge name: stable across ups, distinct between labs.
func bridgeMAC(br string) string {
	h := sha256.Sum256([]byte(br))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4])
}

func deleteBridge(ctx context.Context, br string) error {
	if !linkExists(ctx, br) {
		return nil
	}
	_, err := ipCmd(ctx, "link", "del", br)
	return err
}

// cutLink detaches the host's veth from the bridge: the host keeps its
// carrier and configuration (systemd-networkd sees nothing), but no frame
// reaches or leaves it, like a pulled uplink. There is no iptables or
// netem in every kernel the lab runs on; this needs neither.
func cutLink(ctx context.Context, veth string) error {
	_, err := ipCmd(ctx, "link", "set", "dev", veth, "nomaster")
	return err
}

func healLink(ctx context.Context, veth, br string) error {
	_, err := ipCmd(ctx, "link", "set", "dev", veth, "master", br)
	if err != nil {
		return err
	}
	_, err = ipCmd(ctx, "link", "set", "dev", veth, "up")
	return err
}

// raiseInotify lifts the per-user inotify limits: every booted systemd
// takes several instances and with the default 128 only about ten hosts
// get as far as sshd.
func raiseInotify() error {
	for k, want := range map[string]int{
		"/proc/sys/fs/inotify/max_user_instances": 8192,
		"/proc/sys/fs/inotify/max_user_watches":   1048576,
	} {
		b, err := os.ReadFile(k)
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		cur, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if cur >= want {
			continue
		}
		if err := os.WriteFile(k, []byte(strconv.Itoa(want)), 0o644); err != nil {
			return fmt.Errorf("raise %s to %d: %w", k, want, err)
		}
	}
	return nil
}

// strayLinkWait bounds the wait for a killed machine's interface to go.
const strayLinkWait = 2 * time.Minute

// settleStrayLink makes sure the host's interface name is free before a
// boot. A live nspawn running the machine holds it: that is refused. With
// none, the interface belongs to a machine that was killed: the kernel tears
// a network namespace down asynchronously after its last process ends (its
// veth end, and with it ours, goes last), which took over a minute for
// kubelet hosts with pod namespaces when a CI job killed a lab and the next
// one booted it at once. Wait for that; a link still there after wait has
// no peer anyone uses and is deleted.
func settleStrayLink(ctx context.Context, veth, machine string, wait time.Duration) error {
	if !linkExists(ctx, veth) {
		return nil
	}
	if pid := nspawnOf(machine); pid != 0 {
		return fmt.Errorf("interface %s is in use: machine %s runs as process %d (another lab?)", veth, machine, pid)
	}
	deadline := time.Now().Add(wait)
	for linkExists(ctx, veth) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !linkExists(ctx, veth) {
		return nil
	}
	if _, err := ipCmd(ctx, "link", "del", veth); err != nil && linkExists(ctx, veth) {
		return fmt.Errorf("interface %s of a stopped machine %s stays: %w", veth, machine, err)
	}
	return nil
}
