package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// routesVia DSTS VIAS SELF is the static routes of a host-gw network as
// seen from SELF: for every other host of DSTS (host -> range, e.g.
// hostvarsOf "kube-node" "kube_node_pod_cidr"), {dst: its range, via: its
// VIAS address}, in host-name order so a rendered file does not change
// between runs. The loop over hosts lives here, not in the template.
func routesVia(dsts, vias map[string]any, self string) ([]any, error) {
	hosts := make([]string, 0, len(dsts))
	for h := range dsts {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	out := []any{}
	for _, h := range hosts {
		if h == self {
			continue
		}
		dst, err := netip.ParsePrefix(strings.TrimSpace(fmt.Sprint(dsts[h])))
		if err != nil {
			return nil, fmt.Errorf("routesVia: host %s: range %w", h, err)
		}
		v, ok := vias[h]
		if !ok {
			return nil, fmt.Errorf("routesVia: host %s has a range but no address", h)
		}
		via, err := netip.ParseAddr(strings.TrimSpace(fmt.Sprint(v)))
		if err != nil {
			return nil, fmt.Errorf("routesVia: host %s: address %w", h, err)
		}
		out = append(out, map[string]any{"host": h, "dst": dst.Masked().String(), "via": via.String()})
	}
	return out, nil
}
