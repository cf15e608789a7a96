// Command floor is the benchmark's lower bound: a plain x/crypto/ssh client
// that does only the host work a run of the benchmark cannot avoid, so that
// every gokube figure can be set against it as well as against Ansible.
//
//	floor -i inventory.cfg -g bench one    connect, one session, one exec (sudo -n /bin/true)
//	floor -i inventory.cfg -g bench warm   connect, one session (sudo -n true): nothing to change
//	floor -i inventory.cfg -g bench cold   connect, one session running one root script that
//	                                       makes every change site.yml makes (users, dirs,
//	                                       files, links, enable --now, which reloads systemd)
//
// All hosts at once (up to -forks), like the tools it is compared with. It
// reads the INI inventory `gokube lab inventory` writes (ansible_host,
// ansible_port, ansible_user, ansible_ssh_private_key_file,
// ansible_ssh_known_hosts_file) and verifies host keys.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type host struct {
	name, addr, port, user, key, knownHosts string
}

func main() {
	inv := flag.String("i", "", "INI inventory (as `gokube lab inventory` writes it)")
	group := flag.String("g", "bench", "group whose hosts to contact")
	forks := flag.Int("forks", 50, "hosts contacted at once")
	flag.Parse()
	if *inv == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: floor -i INVENTORY [-g GROUP] one|warm|cold")
		os.Exit(2)
	}
	mode := flag.Arg(0)
	hosts, err := readInventory(*inv, *group)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.name)
	}
	var cmd string
	switch mode {
	case "one":
		cmd = "sudo -n /bin/true"
	case "warm":
		cmd = "sudo -n true"
	case "cold":
		cmd = "sudo -n sh -s"
	default:
		fmt.Fprintln(os.Stderr, "floor: mode must be one, warm or cold")
		os.Exit(2)
	}
	start := time.Now()
	sem := make(chan struct{}, *forks)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var stdin string
			if mode == "cold" {
				stdin = coldScript(h.name, names)
			}
			if err := run(h, cmd, stdin); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Printf("floor %s: %d hosts in %.3f s\n", mode, len(hosts), time.Since(start).Seconds())
}

// run connects to h, opens one session and runs cmd with stdin.
func run(h host, cmd, stdin string) error {
	keyPEM, err := os.ReadFile(h.key)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("key %s: %w", h.key, err)
	}
	hk, err := knownhosts.New(h.knownHosts)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(h.addr, h.port), &ssh.ClientConfig{
		User:            h.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hk,
		Timeout:         60 * time.Second,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var out bytes.Buffer
	s.Stdout, s.Stderr = &out, &out
	if stdin != "" {
		s.Stdin = strings.NewReader(stdin)
	}
	if err := s.Run(cmd); err != nil {
		return fmt.Errorf("%s: %w: %s", cmd, err, out.String())
	}
	return nil
}

// coldScript is every change site.yml makes on a fresh host, in one shell:
// the processes the changes need (groupadd, useradd, mkdir, chown, ln,
// systemctl) and shell builtins for the rest (file contents, modes through
// umask). It leaves the same host state as both tools' cold runs (run.sh
// compares it with theirs).
func coldScript(name string, bench []string) string {
	const d = "/opt/gkbench"
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	file := func(umask, path, content string) {
		w("umask %s; printf '%%s' '%s' >%s", umask, content, path)
	}
	w("set -e")
	w("groupadd -r gkbench")
	w("useradd -r -g gkbench -s /usr/sbin/nologin -M gkbench")
	w("umask 022; mkdir %s", d)
	w("umask 027; mkdir %s/conf %s/log", d, d)
	w("umask 077; mkdir %s/data", d)
	file("022", d+"/conf/one.conf", "one\n")
	file("022", d+"/conf/two.conf", "two\n")
	file("027", d+"/conf/three.conf", "three\n")
	file("077", d+"/conf/four.conf", "four\n")
	file("022", d+"/conf/five.conf", "five\n")
	file("022", d+"/conf/six.conf", "six\n")
	file("022", d+"/conf/app.conf", fmt.Sprintf("# gkbench on %s\nlisten = 0.0.0.0:8080\ndata = %s/data\n", name, d))
	file("027", d+"/conf/app.env", "APP=gkbench\nPORT=8080\n")
	file("022", d+"/conf/hosts", strings.Join(bench, "\n")+"\n")
	file("022", "/etc/systemd/system/gkbench.service", "[Unit]\nDescription=gkbench\n\n[Service]\nExecStart=/bin/sleep infinity\nUser=gkbench\n\n[Install]\nWantedBy=multi-user.target\n")
	file("022", d+"/conf/line1.conf", "extra=1\n")
	file("022", d+"/conf/line2.conf", "level=debug\n")
	file("022", d+"/conf/block.conf", "# BEGIN ANSIBLE MANAGED BLOCK\na=1\nb=2\n# END ANSIBLE MANAGED BLOCK\n")
	w("umask 022; : >%s/data/.initialised", d)
	w("chgrp gkbench %s/conf %s/conf/three.conf", d, d)
	w("chown gkbench %s/data %s/log", d, d)
	w("ln -s %s/conf/app.conf %s/app.conf", d, d)
	w("ln -s %s/log %s/logs", d, d)
	// systemctl enable reloads systemd itself once its links are made: no
	// daemon-reload of its own (gokube's systemd module makes the same
	// saving, modules.enableReloads; Ansible reloads twice).
	w("systemctl enable --now gkbench.service 2>/dev/null")
	return b.String()
}

// readInventory returns the hosts of group with their connection variables
// from the lines that define them (the first line naming a host with k=v).
func readInventory(path, group string) ([]host, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]map[string]string{}
	var members []string
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		fields := strings.Fields(line)
		if section == group {
			members = append(members, fields[0])
		}
		if _, ok := vars[fields[0]]; !ok && len(fields) > 1 {
			kv := map[string]string{}
			for _, f := range fields[1:] {
				if k, v, ok := strings.Cut(f, "="); ok {
					kv[k] = strings.Trim(v, "'\"")
				}
			}
			vars[fields[0]] = kv
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%s: group [%s] has no hosts", path, group)
	}
	hosts := make([]host, 0, len(members))
	for _, m := range members {
		kv := vars[m]
		h := host{name: m, addr: kv["ansible_host"], port: kv["ansible_port"], user: kv["ansible_user"],
			key: kv["ansible_ssh_private_key_file"], knownHosts: kv["ansible_ssh_known_hosts_file"]}
		if h.addr == "" {
			h.addr = m
		}
		if h.port == "" {
			h.port = "22"
		}
		if h.user == "" {
			h.user = "root"
		}
		if h.key == "" || h.knownHosts == "" {
			return nil, fmt.Errorf("%s: host %s: ansible_ssh_private_key_file and ansible_ssh_known_hosts_file are needed", path, m)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}
