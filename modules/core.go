package modules

// registerCore adds the host modules; names and arguments mirror Ansible's
// so operators' habits carry over.
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
}
