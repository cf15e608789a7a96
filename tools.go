//go:build tools

// Package main pins the project's dependencies before the code that uses
// them lands, so parallel work does not race on go.mod.
package main

import (
	_ "github.com/Masterminds/sprig/v3"
	_ "github.com/pkg/sftp"
	_ "github.com/pmezard/go-difflib/difflib"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "gopkg.in/yaml.v3"
)
