package modules

import (
	"context"
	"slices"
	"strconv"
	"strings"
)

// userModule and groupModule read the account databases with getent (so
// NSS sources count) and change them with the shadow utilities.
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

func userProbe(name string) string {
	q := shq(name)
	return "printf 'passwd=%s\\n' \"$(getent passwd " + q + ")\"; printf 'groups=%s\\n' \"$(id -Gn -- " + q + " 2>/dev/null)\"; printf 'primary=%s\\n' \"$(id -gn -- " + q + " 2>/dev/null)\"\n"
}

func (m userModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("user", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return userProbe(a.str("name")), true
}

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
			cmd = append(cmd, "-M")
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
	if _, err := mustRun(ctx, env, strings.Join(cmd, " ")+" -- "+q, false); err != nil {
		return resultFail(err, data)
	}
	return &Result{Changed: true, Data: data}, nil
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
	return "printf 'group=%s\\n' \"$(getent group " + shq(name) + ")\"\n"
}

func (m groupModule) Probe(args map[string]any) (string, bool) {
	a, err := parseArgs("group", m.Spec(), args)
	if err != nil {
		return "", false
	}
	return groupProbe(a.str("name")), true
}

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
	var cmd []string
	switch {
	case state == "absent" && exists:
		cmd = []string{"groupdel"}
	case state == "present" && !exists:
		cmd = []string{"groupadd"}
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
	if _, err := mustRun(ctx, env, strings.Join(cmd, " ")+" -- "+shq(name), false); err != nil {
		return resultFail(err, data)
	}
	return &Result{Changed: true, Data: data}, nil
}
