package modules

// registerCore adds the host modules; names, arguments and registered
// results mirror Ansible's so operators' habits carry over.
//
// Round trips (requests on the host's connection) per task:
//
//	copy, template, lineinfile, blockinfile, get_url, file, stat, user, group,
//	systemd (without daemon_reload): unchanged = 1 (the probe), 0 when the
//	executor handed the batched probe in Env.Probe.
//	A change costs one more: the atomic upload (copy, template, lineinfile,
//	blockinfile, get_url from file://), or one script (attribute fix, mkdir,
//	systemctl, useradd, curl on the host). --diff adds one read of the old
//	content for copy/template (lineinfile/blockinfile already have it);
//	backup adds one copy; validate adds one run before the rename.
//	command/shell/raw: 1 (creates/removes are checked in the same request);
//	0 when a probe batch found that creates/removes hold.
//	wait_for: 1 (the loop runs on the host). unarchive: 1 unchanged,
//	3 changed (probe, upload, extract). copy of a directory: 1 unchanged,
//	+1 for missing directories, +1 per changed file.
//
// Check mode: Env.Conn is a dry connection; probes are read-only requests
// and run, mutations are recorded, so `changed` is a prediction from the
// same code path. Only command/shell/raw (cannot predict), wait_for (does
// not wait), fetch (writes on the control machine), and the "not there
// yet" cases (a unit, a src or a dest an earlier task of the check run
// would have made) look at Env.Check.
func registerCore(r *Registry) {
	r.Register(commandModule{kind: "command"}, "command")
	r.Register(commandModule{kind: "shell"}, "shell")
	r.Register(commandModule{kind: "raw"}, "raw")
	r.Register(copyModule{}, "copy")
	r.Register(copyModule{template: true}, "template")
	r.Register(fileModule{}, "file")
	r.Register(lineInFile{}, "lineinfile")
	r.Register(blockInFile{}, "blockinfile")
	r.Register(statModule{}, "stat")
	r.Register(slurpModule{}, "slurp")
	r.Register(fetchModule{}, "fetch")
	r.Register(systemdModule{alias: "systemd"}, "systemd", "systemd_service")
	r.Register(systemdModule{alias: "service"}, "service")
	r.Register(waitFor{}, "wait_for")
	r.Register(getURL{}, "get_url")
	r.Register(unarchive{}, "unarchive")
	r.Register(userModule{}, "user")
	r.Register(groupModule{}, "group")
	r.Register(packageModule{alias: "package"}, "package")
	r.Register(packageModule{alias: "apt"}, "apt")
}
