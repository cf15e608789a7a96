// Package roles holds the roles bundled into the gokube binary. A `roles/`
// folder beside a playbook overrides them by name.
package roles

import "embed"

// FS holds every bundled role: gokube-defaults, pki, download, etcd,
// loadbalancer, kube-master, client, verify, kube-node, kubeadm.
//
//go:embed all:pki all:download all:etcd all:loadbalancer all:kube-master all:client all:verify all:gokube-defaults all:kube-node all:kubeadm
var FS embed.FS
