// Package engine loads Ansible-style playbooks and runs them on inventory
// hosts through gokube's modules.
//
// # Playbooks
//
// A playbook is a list of plays (or `- import_playbook: other.yml`). Play
// keys: hosts, name, vars, vars_files, roles, pre_tasks, tasks, post_tasks,
// handlers, become, become_user, gather_facts, serial (number, "30%" or a
// list of them; the last repeats), strategy (linear, free), any_errors_fatal,
// max_fail_percentage, tags, environment. Task keys: name, the module, when,
// loop / with_items, loop_control (loop_var, label, index_var), register,
// until / retries / delay, changed_when, failed_when, ignore_errors, notify,
// listen (handlers), tags, become, become_user, run_once, delegate_to,
// no_log, environment, check_mode, timeout (seconds), vars, args; block with
// rescue and always; include_tasks / import_tasks / include_role /
// import_role (all static: file and role names may not be templated, and
// they are expanded when the playbook loads, so --list-tasks shows them).
// Any other key is an error naming file:line. Module arguments are a mapping
// or a `k=v` string; free-form modules (command, shell) take the string,
// with trailing known options (`creates=/x`) split off. Every task's
// arguments are checked against the module's Spec (names, types, choices,
// required) when the playbook loads; templated values pass type checks and
// are converted after rendering.
//
// Roles are looked up in a roles/ folder beside the playbook, then in the
// bundled roles (Options.BundledRoles). A role has defaults/main.yml,
// vars/main.yml, tasks/main.yml, handlers/main.yml, templates/, files/ and
// meta/main.yml dependencies (run first, once per play; cycles are errors).
// `template` looks for src in the role's templates/, then the playbook
// directory's templates/ and the playbook directory; `copy` in files/.
//
// # Variable precedence (lowest first)
//
//  1. role defaults (every role of the play; the task's own role on top)
//  2. inventory vars: all < parent group < child group < host
//     (group_vars/ and host_vars/ beside the inventory, then beside the
//     playbook)
//  3. facts (ansible_* from gather_facts/setup). As in Ansible they sit
//     above inventory host vars, so a fact wins over an inventory variable
//     of the same name; below play vars.
//  4. play vars
//  5. play vars_files
//  6. role vars (vars/main.yml; the task's own role on top)
//  7. block vars, include/import vars and role parameters (outer to inner)
//  8. task vars
//  9. set_fact, registered results and include_vars
//  10. extra vars (-e k=v, -e @file.yml / @file.json, -e '{"json": 1}')
//
// Magic variables are set last and cannot be overridden: inventory_hostname,
// inventory_hostname_short, groups, group_names, play_hosts,
// ansible_play_batch, ansible_play_hosts, ansible_check_mode,
// ansible_diff_mode, ansible_verbosity, playbook_dir, inventory_dir,
// inventory_file, role_name, role_path, ansible_play_name; in loops item
// (or loop_control.loop_var), ansible_loop (index, index0, first, last,
// length, revindex, revindex0) and ansible_loop_var. hostvars is computed
// lazily: `.hostvars.node1.ansible_host` renders only that variable.
// Facts: ansible_hostname, ansible_fqdn, ansible_nodename, ansible_domain,
// ansible_default_ipv4 (address, interface, gateway),
// ansible_all_ipv4_addresses, ansible_distribution,
// ansible_distribution_version, ansible_distribution_major_version,
// ansible_distribution_release, ansible_os_family, ansible_architecture,
// ansible_kernel, ansible_processor_vcpus, ansible_memtotal_mb,
// ansible_service_mgr, and ansible_facts (the same without the prefix).
// They are gathered once per host per run in one round trip.
//
// # Templates
//
// Go text/template with sprig (without env and expandenv) and
// missingkey=error; the data is the host's variables: `{{ .etcd_peer_port }}`.
// A variable whose value contains "{{" is rendered when it is used, so
// variables may refer to each other in any order; a cycle is an error that
// shows the chain. A value that is exactly one `{{ expr }}` with nothing
// around it keeps the expression's type (a list stays a list, a bool a
// bool), like Ansible's native types; any text around it, a newline
// included, makes the value a string, byte for byte ("{{ .key }}\n" keeps
// its newline). Errors name the place, the expression, and the host:
//
//	roles/etcd/templates/etcd.env.tmpl:12: .etcd_peer_port is not defined (host node-2)
//
// when, changed_when, failed_when, until and assert's that take a bare
// pipeline or a list of them (all must hold):
//
//	when: eq .etcd_bootstrap "discovery"
//	when: [.result.changed, not .ansible_check_mode]
//	when: etcd_enabled            # a bare name means .etcd_enabled
//	when: not r.changed           # a bare path means .r.changed
//
// Truthiness is Ansible's, in conditions and in {{ if }} alike (and the
// operands of and/or/not there): false, nil, 0, "", empty lists and maps are
// false, and so are the strings "false", "no", "off", "n", "0" and "none"
// (any case), so `-e flag=false` is false everywhere. {{ with }} keeps Go's
// rule.
//
// Arguments of default, coalesce, empty, required and get, and a value
// piped into them, may be undefined at any depth: a missing map key reads as
// nil there, so `{{ .item.shell | default "/bin/bash" }}` works for an item
// without the key, and `{{ hostvar $h "port" | default 8080 }}` for a host
// without the variable. Anywhere else a missing key fails with its path.
//
// eq, ne, lt, le, gt, ge compare a number with a numeric string as numbers
// (`gt .app_port 1000` with -e app_port=9090), integers exactly; strings
// with strings; other mixes fail with a message that says how to convert.
// eq with more arguments is true when the first equals any of the others.
//
// Helpers besides sprig's:
//
//	hostsOf "etcd"                 hosts of a group, inventory order
//	                               {{ range hostsOf "etcd" }}{{ . }} {{ end }}
//	hostvar "node-1" "ansible_host" a variable of another host;
//	                               hostvar H "x" 8080 with a default
//	get .item "shell" "/bin/bash"  the value at the keys, else the default (sprig's get .m "k" still works)
//	                               get $.hostvars $h "app_port" 8080
//	version .ansible_kernel "<" "5.10"  Ansible's version test (loose);
//	                               "strict" as a 4th argument for N.N[.N][aN|bN]
//	inGroup "etcd"                 the current host is in the group
//	                               when: inGroup "kube-master"
//	groupIndex "etcd"              index of the current host in the group (-1)
//	                               {{ if eq (groupIndex "etcd") 0 }}first{{ end }}
//	ipOf "node-1"                  ansible_host, else default IPv4 fact, else the name
//	joinHostPort (ipOf .inventory_hostname) 2379   -> "10.0.0.5:2379"
//	defined "x"                    the variable x is defined: when: not (defined "x");
//	                               defined "m.name" for a key inside a map
//	bool "yes"                     Ansible truthiness -> true
//	required "msg" .x              fails with msg when x is undefined or empty
//	toYaml .x / toJson .x          serialise; fromYaml / fromJson parse
//	b64decode .slurped.content     base64 to text (sprig's b64enc encodes)
//	default "x" .y                 sprig's default
//	dict2items .m                  [{key, value}] sorted by key, for loop:
//	cidrHost / cidrSubnet          the n-th address / subrange of a range
//	routesVia DSTS VIAS .inventory_hostname   [{host, dst, via}] of the other hosts
//	                               (DSTS, VIAS: hostvarsOf maps), host-gw routes
//
// # Execution
//
// Hosts come from the play's pattern and --limit; each host is dialled once
// per run. linear (default) runs each task on every host of the batch before
// the next (in parallel, up to --forks); free lets each host run ahead.
// serial cuts hosts into batches that each run the whole play. run_once runs
// on the first host of the batch and gives its result (and registered
// variable, set_fact) to all. delegate_to runs the module on another host's
// connection with the current host's variables (localhost: the control
// machine). Handlers run once at flush points (after pre_tasks, after roles
// and tasks, after post_tasks, and on meta: flush_handlers), in definition
// order, only on hosts that notified them by name or listen topic. A failed
// host stops alone unless any_errors_fatal or max_fail_percentage stop the
// play; failed and unreachable hosts sit out later plays.
//
// Probes: before a probeable task runs on a host, the executor looks ahead
// over the host's next tasks (up to 64 probes, the same become settings,
// stopping at a task whose arguments or condition cannot be rendered yet
// or at meta; passing over tasks that cannot probe, delegated and run_once
// tasks) and runs all their probes as ONE read-only request. A task whose
// module reports changed (a command that ran does) drops the host's cache;
// each cached entry is also checked against the script the task would run
// now, so a stale one is a miss, never a wrong answer. A warm run of N
// probeable tasks costs one request for facts and one for probes per host.
//
// Tags: --tags selects tasks with any of the tags (plus those tagged
// always; all, tagged, untagged work as in Ansible); --skip-tags removes
// them; a task tagged never runs only when one of its tags is asked for.
//
// # Where things are
//
// Loading (no host contacted):
//
//	ast.go        Playbook, Play, Role, Task, Cond, Pos: what the loader produces
//	keywords.go   the keyword tables (play, task/block, roles: entry): open it to add a keyword
//	load_play.go  LoadPlaybook, import_playbook, a play's sections, handler checks, numbering
//	load_role.go  roles: entries, role lookup, defaults/vars/meta/handlers, dependencies
//	load_task.go  a task: keywords, inheritance from blocks/includes/roles, blocks, includes,
//	              engineActions (debug, set_fact, assert, ... with their Specs)
//	args.go       module arguments: k=v and free form, load-time check, run-time render
//	decode.go     YAML helpers (positions, maps, bools, string lists, conditions)
//	src.go        files on disk or in the bundled roles
//
// Running:
//
//	options.go    Options, Load, -e extra vars
//	preflight.go  checks against the inventory before the first play (host patterns, delegate_to)
//	run.go        Run, plays, --limit, --tags, --start-at-task, serial batches, the recap
//	strategy.go   a batch in flight; the strategy interface (linear lockstep, free); run_once
//	hostrun.go    one host's walk: tasks, blocks/rescue/always, handlers, notify, stats
//	task.go       one task on one host: loop, until/retries, when, changed_when/failed_when,
//	              timeout, the one no_log redaction step (redact)
//	scope.go      variable precedence for a task (the list above), magic variables, become
//	vars.go       scope lookups, lazy rendering, hostvars, the template cache
//	template.go   template functions, error positions, load-time template checks
//	tmplrewrite.go parse-tree rewrites: missing keys soft under default & co, one truthiness
//	tmplfuncs.go  get, version, and eq/lt/... that compare numbers with numeric strings
//	jinja.go      Jinja habits refused with the Go form; better "function not defined"
//	module.go     calling a module: delegate_to, environment, file search path, modules.Env
//	actions.go    engine actions (debug, set_fact, assert, fail, pause, meta, include_vars)
//	facts.go      gather_facts / setup: one script, parsed in Go
//	probe.go      probe look-ahead and batching
//	pool.go       one connection per host, SSH configuration from inventory and flags
//	output.go     text and JSON output, the recap (HostStats, Event)
//	list.go       --list-tasks, --list-hosts, graph
//	render.go     gokube render: a template or a variable for one host, offline; where a variable was set
//	retry.go      PLAYBOOK.retry after failed hosts
//	errors.go     LoadError (LoadErrors: every one found), RunError (joined HostErrors), UsageError
//
// CONTRIBUTING.md at the repository root walks through adding a keyword,
// a module and a role.
package engine
