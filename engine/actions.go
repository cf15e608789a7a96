package engine

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"gokube/connection"
	"gokube/modules"
)

// action runs an engine-level action (not a host module).
func (hr *hostRun) action(ctx context.Context, t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	switch t.Action {
	case "debug":
		return hr.debug(t, sc, args)
	case "set_fact":
		facts := map[string]any{}
		for _, k := range slices.Sorted(maps.Keys(args)) {
			if k == "cacheable" {
				continue
			}
			p := t.Pos
			if ap, ok := t.ArgPos[k]; ok {
				p = ap
			}
			v, err := sc.resolve(args[k], p)
			if err != nil {
				return nil, err
			}
			facts[k] = v
		}
		for k, v := range facts {
			hr.setVar(k, v)
		}
		return &modules.Result{Data: map[string]any{"ansible_facts": facts}}, nil
	case "assert":
		return hr.assert(t, sc, args)
	case "fail":
		msg := "Failed as requested from task"
		if m, ok := args["msg"]; ok {
			msg = fmt.Sprint(m)
		}
		return &modules.Result{Failed: true, Msg: msg}, nil
	case "pause":
		d := time.Duration(0)
		if s, ok := modules.AsInt(args["seconds"]); ok {
			d += time.Duration(s) * time.Second
		}
		if m, ok := modules.AsInt(args["minutes"]); ok {
			d += time.Duration(m) * time.Minute
		}
		if d == 0 && args["prompt"] != nil {
			return nil, fmt.Errorf("%s: pause with a prompt needs seconds or minutes (gokube does not read the terminal)", t.Pos)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &modules.Result{Data: map[string]any{"delta": d.Seconds()}}, nil
	case "meta":
		switch fmt.Sprint(args["_raw"]) {
		case "clear_facts":
			hr.hs.mu.Lock()
			hr.hs.facts, hr.hs.gotF = map[string]any{}, false
			hr.hs.mu.Unlock()
		case "clear_host_errors", "refresh_inventory", "reset_connection", "noop", "end_host", "end_play", "flush_handlers":
		}
		return &modules.Result{}, nil
	case "setup":
		if t.Implicit {
			hr.hs.mu.Lock()
			got := hr.hs.gotF
			hr.hs.mu.Unlock()
			if got {
				return &modules.Result{}, nil
			}
		}
		unlock := hr.r.pool.lock(hr.hs.name)
		defer unlock()
		conn, err := hr.r.pool.get(ctx, hr.hs.name, hr.r.checkFor(t))
		if err != nil {
			return nil, err
		}
		facts, err := gatherFacts(ctx, conn)
		if err != nil {
			return nil, err
		}
		hr.hs.mu.Lock()
		hr.hs.facts, hr.hs.gotF = facts, true
		hr.hs.mu.Unlock()
		return &modules.Result{Data: map[string]any{"ansible_facts": facts["ansible_facts"]}}, nil
	case "include_vars":
		return hr.includeVars(t, args)
	}
	return nil, fmt.Errorf("%s: action %s cannot run here", t.Pos, t.Action)
}

func (hr *hostRun) debug(t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	if v, ok := modules.AsInt(args["verbosity"]); ok && v > hr.r.opts.Verbosity {
		return &modules.Result{Skipped: true}, nil
	}
	if name, ok := args["var"].(string); ok && name != "" {
		expr := strings.TrimSpace(name)
		if !strings.Contains(expr, "{{") {
			if !strings.HasPrefix(expr, ".") && identRe.MatchString(strings.SplitN(expr, ".", 2)[0]) {
				expr = "." + expr
			}
			expr = "{{ " + expr + " }}"
		}
		v, err := sc.renderNative(t.Pos, expr)
		if err != nil {
			if te, ok := err.(*TemplateError); ok && te.Missing {
				v = "VARIABLE IS NOT DEFINED!"
			} else {
				return nil, err
			}
		}
		return &modules.Result{Data: map[string]any{name: v, "_var": map[string]any{name: v}}}, nil
	}
	msg := any("Hello world!")
	if m, ok := args["msg"]; ok {
		p := t.Pos
		if ap, ok := t.ArgPos["msg"]; ok {
			p = ap
		}
		v, err := sc.resolve(m, p)
		if err != nil {
			return nil, err
		}
		msg = v
	}
	return &modules.Result{Data: map[string]any{"msg": msg}}, nil
}

func (hr *hostRun) assert(t *Task, sc *scope, args map[string]any) (*modules.Result, error) {
	p := t.Pos
	if ap, ok := t.ArgPos["that"]; ok {
		p = ap
	}
	for _, c := range assertConds(t.Args["that"], p) {
		ok, err := sc.cond(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			msg := "Assertion failed: " + c.Expr
			if m, ok := args["fail_msg"]; ok && m != nil {
				msg = fmt.Sprint(m)
			}
			return &modules.Result{Failed: true, Msg: msg, Data: map[string]any{"assertion": c.Expr, "evaluated_to": false}}, nil
		}
	}
	msg := "All assertions passed"
	if m, ok := args["success_msg"]; ok && m != nil {
		msg = fmt.Sprint(m)
	}
	if q, _ := modules.AsBool(args["quiet"]); q {
		msg = ""
	}
	return &modules.Result{Msg: msg}, nil
}

func (hr *hostRun) includeVars(t *Task, args map[string]any) (*modules.Result, error) {
	name := fmt.Sprint(args["file"])
	var cands []src
	if t.Role != nil {
		cands = append(cands, t.Role.Dir.join("vars").join(name))
	}
	cands = append(cands, t.posDir().join(name), hr.play.Dir.join(name))
	for _, c := range cands {
		if !c.exists() {
			continue
		}
		m, err := loadVarsFile(c, t.Pos)
		if err != nil {
			return nil, err
		}
		if under, ok := args["name"].(string); ok && under != "" {
			hr.setVar(under, m)
		} else {
			for k, v := range m {
				hr.setVar(k, v)
			}
		}
		return &modules.Result{Data: map[string]any{"ansible_facts": m}}, nil
	}
	return nil, fmt.Errorf("%s: include_vars: %s not found", t.Pos, name)
}

// posDir is the directory of the file the task was written in.
func (t *Task) posDir() src {
	return src{path: dirOf(t.Pos.File), display: dirOf(t.Pos.File)}
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}

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

func gatherFacts(ctx context.Context, conn connection.Conn) (map[string]any, error) {
	res, err := conn.Run(ctx, connection.Request{Script: factsScript, ReadOnly: true})
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
	osr := map[string]string{}
	for _, l := range sec["os-release"] {
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
	var all []any
	ifaceAddr := map[string]string{}
	for _, l := range sec["addr"] {
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
	for _, l := range sec["route"] {
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
