package modules

import (
	"context"
	"slices"
	"strconv"
	"strings"
)

// userModule and groupModule read the account databases (the local files
// when NSS reads them first, getent otherwise: accountFiles) and change
// them with the shadow utilities.
type userModule struct{}

func (userModule) Spec() Spec {
	return Spec{
		Doc: "Creates, changes and removes local accounts (getent to read, the shadow utilities to change).",
		Returns: map[string]string{
			"comment": "GECOS",
			"group":   "primary gid",
			"home":    "home directory",
			"name":    "the user",
			"shell":   "login shell",
			"state":   "present or absent",
			"system":  "whether made as a system account",
			"uid":     "uid",
		},
		Args: map[string]Arg{
			"name":        {Type: String, Required: true, Aliases: []string{"user"}, Doc: "User name."},
			"state":       {Type: String, Choices: []string{"present", "absent"}, Doc: "present or absent.", Default: "present"},
			"system":      {Type: Bool, Doc: "Create a system account (useradd -r).", Default: "no"},
			"shell":       {Type: String, Doc: "Login shell."},
			"home":        {Type: String, Doc: "Home directory."},
			"create_home": {Type: Bool, Aliases: []string{"createhome"}, Doc: "Create the home directory when the user is created.", Default: "yes"},
			"groups":      {Type: List, Doc: "Supplementary groups; without append they are exactly these."},
			"append":      {Type: Bool, Doc: "Add groups to the current ones instead of replacing them.", Default: "no"},
			"group":       {Type: String, Doc: "Primary group (name or gid)."},
			"uid":         {Type: Int, Doc: "User id."},
			"comment":     {Type: String, Doc: "GECOS field."},
			"remove":      {Type: Bool, Doc: "With state absent: remove the home directory too.", Default: "no"},
		}}
}

// accountFiles defines gk_acct_files, which succeeds when /etc/nsswitch.conf
// names files first for both passwd and group: then a name found in
// /etc/passwd or /etc/group is what getent would answer, and the probe
// reads the files with the shell's own read instead of starting getent
// and id (three processes per user, 10-30 ms each on a busy host). A name
// not found there, or other sources first, asks getent, and id for a user
// getent knows (id knows no other: for a user getent does not know, its
// groups and primary group are empty without asking).
// Group memberships from sources after files (nss-systemd's userdb
// records) are not seen for a user found in /etc/passwd.
// When files is the only source of both (gk_ao=1: a minimal Debian, the
// lab's hosts), the files are the whole database and a name not found in
// them is absent: getent would read the same files and find nothing, so
// it is not started either (a cold run's group and user, two processes).
const accountFiles = `command -v gk_acct_files >/dev/null 2>&1 || gk_acct_files() {
gk_ap=; gk_ag=; gk_ao=
while read -r gk_k gk_v; do case $gk_k in passwd:) gk_ap=$gk_v;; group:) gk_ag=$gk_v;; esac; done </etc/nsswitch.conf || return 1
case $gk_ap in files|"files "*) ;; *) return 1;; esac
case $gk_ag in files|"files "*) ;; *) return 1;; esac
if [ "$gk_ap" = files ] && [ "$gk_ag" = files ]; then gk_ao=1; fi
}
`

func userProbe(name string) string {
	q := shq(name)
	// From the files: the passwd line, the primary group's name (by gid)
	// and every group listing the user, primary first, as id -Gn prints
	// them; any of them missing falls back to getent and id.
	return accountFiles + `{ gk_pl=; gk_pg=; gk_gs=
if gk_acct_files; then
while IFS= read -r gk_l || [ -n "$gk_l" ]; do case $gk_l in ` + q + `:*) gk_pl=$gk_l; break;; esac; done </etc/passwd
fi
if [ -n "$gk_pl" ]; then
gk_r=${gk_pl#*:}; gk_r=${gk_r#*:}; gk_r=${gk_r#*:}; gk_r=${gk_r%%:*}
while IFS=: read -r gk_gn gk_gx gk_gi gk_gm || [ -n "$gk_gn" ]; do
if [ -z "$gk_pg" ] && [ "$gk_gi" = "$gk_r" ]; then gk_pg=$gk_gn; fi
case ,$gk_gm, in *,` + q + `,*) gk_gs="$gk_gs $gk_gn";; esac
done </etc/group
fi
if [ -n "$gk_pg" ]; then
printf 'passwd=%s\ngroups=%s\nprimary=%s\n' "$gk_pl" "$gk_pg$gk_gs" "$gk_pg"
elif [ -z "$gk_pl" ] && [ "$gk_ao" = 1 ]; then
printf 'passwd=\ngroups=\nprimary=\n'
elif gk_pl=$(getent passwd ` + q + `) && [ -n "$gk_pl" ]; then
printf 'passwd=%s\n' "$gk_pl"; printf 'groups=%s\n' "$(id -Gn -- ` + q + ` 2>/dev/null)"; printf 'primary=%s\n' "$(id -gn -- ` + q + ` 2>/dev/null)"
else
printf 'passwd=\ngroups=\nprimary=\n'
fi
}
`
}

func (m userModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("user", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return userProbe(a.str("name")), true
}

// ProbeScope: the probe reads the user's entry and the groups that list
// it or hold its gid.
func (m userModule) ProbeScope(args map[string]any) ProbeScope {
	a, err := parseArgs("user", m.Spec(), args)
	if err != nil {
		return ProbeScope{}
	}
	return ProbeScope{Account: "user " + a.str("name")}
}

// Pipelinable: a change is one useradd, usermod or userdel whose output
// the result does not use.
func (userModule) Pipelinable() {}

func (m userModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("user", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	name := a.str("name")
	out, err := probeOrRun(ctx, env, userProbe(name))
	if err != nil {
		return nil, err
	}
	kv := parseKV(out)
	pw := strings.Split(kv["passwd"], ":")
	exists := len(pw) >= 7
	state := a.str("state")
	if state == "" {
		state = "present"
	}
	data := map[string]any{"name": name, "state": state}
	if exists {
		data["uid"], _ = strconv.Atoi(pw[2])
		data["group"], _ = strconv.Atoi(pw[3])
		data["home"], data["shell"], data["comment"] = pw[5], pw[6], pw[4]
	}
	var cmd []string
	accounts := false // the change edits the account databases only (Result.AccountsOnly)
	q := shq(name)
	switch {
	case state == "absent" && exists:
		cmd = []string{"userdel"}
		if a.boolean("remove", false) {
			cmd = append(cmd, "-r")
		}
	case state == "present" && !exists:
		cmd = []string{"useradd"}
		if a.boolean("system", false) {
			cmd = append(cmd, "-r")
		}
		if a.boolean("create_home", true) {
			cmd = append(cmd, "-m")
		} else {
			// No home: only the account databases, and a mail spool
			// where useradd is set up to make one (CREATE_MAIL_SPOOL).
			cmd = append(cmd, "-M")
			accounts = true
		}
		for _, o := range [][2]string{{"-s", "shell"}, {"-d", "home"}, {"-u", "uid"}, {"-g", "group"}, {"-c", "comment"}} {
			if a.has(o[1]) {
				cmd = append(cmd, o[0], shq(a.str(o[1])))
			}
		}
		if g := a.list("groups"); len(g) > 0 {
			cmd = append(cmd, "-G", shq(strings.Join(g, ",")))
		}
		data["system"] = a.boolean("system", false)
	case state == "present":
		cmd = usermodArgs(a, kv, pw)
		if len(cmd) > 0 {
			cmd = append([]string{"usermod"}, cmd...)
		}
	}
	if len(cmd) == 0 {
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	// useradd is short; userdel -r and usermod -m move a home of any size,
	// so they run in a subshell a cancellation kills at once.
	if _, err := mustRunChange(ctx, env, strings.Join(cmd, " ")+" -- "+q, cmd[0] == "useradd"); err != nil {
		return resultFail(err, data)
	}
	res := &Result{Changed: true, Data: data}
	if accounts {
		res.AccountsOnly = true
		res.Touched = []string{"/var/mail/" + name, "/var/spool/mail/" + name}
		// useradd makes the user's own group unless told one
		// (USERGROUPS_ENAB); -G adds it to existing groups, whose
		// entries are not absent.
		res.Added = []string{"user " + name, "group " + name}
	}
	return res, nil
}

// usermodArgs are the usermod options that bring an existing user (its
// passwd entry pw, its groups in kv) to what the task asks; none when it
// already matches.
func usermodArgs(a cargs, kv map[string]string, pw []string) []string {
	var cmd []string
	for _, o := range [][3]string{{"-s", "shell", pw[6]}, {"-d", "home", pw[5]}, {"-u", "uid", pw[2]}, {"-c", "comment", pw[4]}} {
		if a.has(o[1]) && a.str(o[1]) != o[2] {
			cmd = append(cmd, o[0], shq(a.str(o[1])))
		}
	}
	if g := a.str("group"); g != "" && g != kv["primary"] && g != pw[3] {
		cmd = append(cmd, "-g", shq(g))
	}
	if a.has("groups") {
		have := map[string]bool{}
		for _, g := range strings.Fields(kv["groups"]) {
			if g != kv["primary"] {
				have[g] = true
			}
		}
		want := a.list("groups")
		var missing []string
		for _, g := range want {
			if !have[g] {
				missing = append(missing, g)
			}
		}
		if a.boolean("append", false) {
			if len(missing) > 0 {
				cmd = append(cmd, "-a", "-G", shq(strings.Join(missing, ",")))
			}
		} else if len(missing) > 0 || len(have) != len(slices.Compact(slices.Sorted(slices.Values(want)))) {
			cmd = append(cmd, "-G", shq(strings.Join(want, ",")))
		}
	}
	return cmd
}

type groupModule struct{}

func (groupModule) Spec() Spec {
	return Spec{
		Doc: "Creates and removes local groups.",
		Returns: map[string]string{
			"gid":    "gid",
			"name":   "the group",
			"state":  "present or absent",
			"system": "whether made as a system group",
		},
		Args: map[string]Arg{
			"name":   {Type: String, Required: true, Doc: "Group name."},
			"state":  {Type: String, Choices: []string{"present", "absent"}, Doc: "present or absent.", Default: "present"},
			"system": {Type: Bool, Doc: "Create a system group.", Default: "no"},
			"gid":    {Type: Int, Doc: "Group id."},
		}}
}

func groupProbe(name string) string {
	q := shq(name)
	return accountFiles + `{ gk_gl=
if gk_acct_files; then
while IFS= read -r gk_l || [ -n "$gk_l" ]; do case $gk_l in ` + q + `:*) gk_gl=$gk_l; break;; esac; done </etc/group
fi
if [ -n "$gk_gl" ] || [ "$gk_ao" = 1 ]; then printf 'group=%s\n' "$gk_gl"; else printf 'group=%s\n' "$(getent group ` + q + `)"; fi
}
`
}

func (m groupModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("group", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return groupProbe(a.str("name")), true
}

// ProbeScope: the probe reads the group's entry alone.
func (m groupModule) ProbeScope(args map[string]any) ProbeScope {
	a, err := parseArgs("group", m.Spec(), args)
	if err != nil {
		return ProbeScope{}
	}
	return ProbeScope{Account: "group " + a.str("name")}
}

// Pipelinable: a change is one groupadd, groupmod or groupdel whose
// output the result does not use.
func (groupModule) Pipelinable() {}

func (m groupModule) Run(ctx context.Context, env *Env, args map[string]any) (*Result, error) {
	a, err := parseArgs("group", m.Spec(), args)
	if err != nil {
		return nil, err
	}
	name := a.str("name")
	out, err := probeOrRun(ctx, env, groupProbe(name))
	if err != nil {
		return nil, err
	}
	gr := strings.Split(parseKV(out)["group"], ":")
	exists := len(gr) >= 3
	state := a.str("state")
	if state == "" {
		state = "present"
	}
	data := map[string]any{"name": name, "state": state}
	if exists {
		data["gid"], _ = strconv.Atoi(gr[2])
	}
	var cmd, added []string
	switch {
	case state == "absent" && exists:
		cmd = []string{"groupdel"}
	case state == "present" && !exists:
		cmd = []string{"groupadd"}
		added = []string{"group " + name}
		if a.boolean("system", false) {
			cmd = append(cmd, "-r")
		}
		if a.has("gid") {
			cmd = append(cmd, "-g", strconv.Itoa(a.integer("gid", 0)))
		}
	case state == "present" && a.has("gid") && strconv.Itoa(a.integer("gid", 0)) != gr[2]:
		cmd = []string{"groupmod", "-g", strconv.Itoa(a.integer("gid", 0))}
	}
	if len(cmd) == 0 {
		return &Result{Msg: "unchanged", Data: data}, nil
	}
	if _, err := mustRunChange(ctx, env, strings.Join(cmd, " ")+" -- "+shq(name), true); err != nil {
		return resultFail(err, data)
	}
	// groupadd, groupdel, groupmod: the group database alone.
	return &Result{Changed: true, Data: data, AccountsOnly: true, Added: added}, nil
}
