//go:build tools

// Package tools names the etcd commands gokube builds, so `go mod tidy`
// keeps every module they need in go.mod and go.sum.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
