package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadTask loads a one-task playbook and returns the load error.
func loadTask(t *testing.T, task string) error {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "site.yml")
	play := "- hosts: all\n  tasks:\n    - " + task + "\n"
	if err := os.WriteFile(p, []byte(play), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPlaybook(p, nil, nil)
	return err
}

// Literal argument values that are wrong whatever host runs them are
// refused when the playbook is loaded (so by --syntax-check, before any
// connection), with file, line and argument, by the rule the module's Spec
// declares for the argument (modules.Arg.Kind, Spec.Exclusive,
// Spec.RequiredIf). Each case names the line the message must point at.
func TestLiteralArgsRefusedAtLoad(t *testing.T) {
	cases := []struct{ name, task, want string }{
		// modes
		{"file mode not octal", "file: {path: /x, mode: '0999'}", `site.yml:3: file: argument "mode": "0999" is not an octal mode`},
		{"file mode bad symbolic", "file: {path: /x, mode: 'u=rw,g=q'}", `site.yml:3: file: argument "mode": want an octal mode like "0644" or a symbolic one`},
		{"file mode word", "file: {path: /x, mode: rw}", `site.yml:3: file: argument "mode": want an octal mode`},
		{"file mode out of range", "file:\n        path: /x\n        mode: 0o77777", `site.yml:5: file: argument "mode": mode 77777 (octal) is out of range`},
		{"copy mode bad", "copy: {src: a, dest: /x, mode: 'u+z'}", `site.yml:3: copy: argument "mode": want an octal mode`},
		{"copy directory_mode preserve", "copy: {src: a, dest: /x, directory_mode: preserve}", `site.yml:3: copy: argument "directory_mode": want an octal mode`},
		{"template mode bad", "template: {src: a.tmpl, dest: /x, mode: '08'}", `site.yml:3: template: argument "mode": "08" is not an octal mode`},
		{"lineinfile mode bad", "lineinfile: {path: /x, line: a, mode: 'x=r'}", `site.yml:3: lineinfile: argument "mode": want an octal mode`},
		{"blockinfile mode bad", "blockinfile: {path: /x, block: a, mode: '7777a'}", `site.yml:3: blockinfile: argument "mode": "7777a" is not an octal mode`},
		{"get_url mode bad", "get_url: {url: 'https://h/f', dest: /x, mode: 'g+q'}", `site.yml:3: get_url: argument "mode": want an octal mode`},
		{"unarchive mode bad", "unarchive: {src: a.tgz, dest: /x, mode: '9'}", `site.yml:3: unarchive: argument "mode": "9" is not an octal mode`},
		// regular expressions
		{"lineinfile regexp", "lineinfile: {path: /x, regexp: '^(a', line: a}", `site.yml:3: lineinfile: argument "regexp": not a regular expression`},
		{"lineinfile regex alias", "lineinfile:\n        path: /x\n        regex: '[a'\n        line: a", `site.yml:5: lineinfile: argument "regex": not a regular expression`},
		{"lineinfile insertafter", "lineinfile: {path: /x, line: a, insertafter: '*a'}", `site.yml:3: lineinfile: argument "insertafter": not a regular expression`},
		{"lineinfile insertbefore", "lineinfile: {path: /x, line: a, insertbefore: 'a(?=b)'}", `site.yml:3: lineinfile: argument "insertbefore": not a regular expression`},
		{"blockinfile insertafter", "blockinfile: {path: /x, block: a, insertafter: '(('}", `site.yml:3: blockinfile: argument "insertafter": not a regular expression`},
		{"wait_for search_regex", "wait_for: {path: /x, search_regex: 'a)'}", `site.yml:3: wait_for: argument "search_regex": not a regular expression`},
		// ports
		{"wait_for port zero", "wait_for: {port: 0}", `site.yml:3: wait_for: argument "port": 0 is not a port`},
		{"wait_for port too big", "wait_for:\n        port: 70000", `site.yml:4: wait_for: argument "port": 70000 is not a port`},
		{"wait_for port negative", "wait_for: {port: -1}", `site.yml:3: wait_for: argument "port": -1 is not a port`},
		// URLs
		{"uri url no scheme", "uri: {url: 'example.org/x'}", `site.yml:3: uri: argument "url": want an http:// or https:// URL with a host, got "example.org/x"`},
		{"uri url ftp", "uri: {url: 'ftp://h/x'}", `site.yml:3: uri: argument "url": want an http:// or https:// URL`},
		{"uri url no host", "uri: {url: 'https:///x'}", `site.yml:3: uri: argument "url": want an http:// or https:// URL`},
		{"get_url no scheme", "get_url: {url: 'h/f', dest: /x}", `site.yml:3: get_url: argument "url": want an http://, https:// or file:// URL, got "h/f"`},
		{"get_url relative file", "get_url: {url: 'file:rel/f', dest: /x}", `site.yml:3: get_url: argument "url": a file:// URL needs an absolute path`},
		{"kube_health url", "kube_health: {url: '127.0.0.1:6443'}", `site.yml:3: kube_health: argument "url": want an http:// or https:// URL`},
		{"kubeconfig server no scheme", "kubeconfig: {dest: /k, server: '10.0.0.1:6443', ca_cert: /c, client_cert: /c, client_key: /k}", `site.yml:3: kubeconfig: argument "server": want an http:// or https:// URL with a host, got "10.0.0.1:6443"`},
		{"kube_verify apiserver no scheme", "kube_verify: {apiservers: {m1: 'https://10.0.0.1:6443', m2: '10.0.0.2:6443'}, ca_cert: /c, client_cert: /c, client_key: /k}", `site.yml:3: kube_verify: argument "apiservers": want an http:// or https:// URL with a host, got "10.0.0.2:6443"`},
		{"kube_verify loadbalancer no scheme", "kube_verify: {apiservers: {m1: 'https://10.0.0.1:6443'}, loadbalancer: 'lb:6443', ca_cert: /c, client_cert: /c, client_key: /k}", `site.yml:3: kube_verify: argument "loadbalancer": want an http:// or https:// URL`},
		{"haproxy_server stats_url no scheme", "haproxy_server: {backend: b, stats_url: '127.0.0.1:8404/stats'}", `site.yml:3: haproxy_server: argument "stats_url": want an http:// or https:// URL`},
		// HTTP status codes
		{"uri status word", "uri: {url: 'https://h/', status_code: ok}", `site.yml:3: uri: argument "status_code": ok is not an HTTP status code`},
		{"uri status out of range", "uri: {url: 'https://h/', status_code: 42}", `site.yml:3: uri: argument "status_code": 42 is not an HTTP status code`},
		{"uri status list", "uri: {url: 'https://h/', status_code: [200, 2000]}", `site.yml:3: uri: argument "status_code": 2000 is not an HTTP status code`},
		{"uri status csv", "uri: {url: 'https://h/', status_code: '200,abc'}", `site.yml:3: uri: argument "status_code": abc is not an HTTP status code`},
		{"uri status map", "uri: {url: 'https://h/', status_code: {a: 1}}", `site.yml:3: uri: argument "status_code": want a scalar or a list, got a mapping`},
		// checksums
		{"get_url checksum no algo", "get_url: {url: 'https://h/f', dest: /x, checksum: " + strings.Repeat("a", 64) + "}", `site.yml:3: get_url: argument "checksum": want sha256:<hex> (or sha1:<hex>)`},
		{"get_url checksum md5", "get_url: {url: 'https://h/f', dest: /x, checksum: 'md5:abc'}", `site.yml:3: get_url: argument "checksum": want sha256:<hex>`},
		{"get_url checksum short", "get_url: {url: 'https://h/f', dest: /x, checksum: 'sha256:abc'}", `site.yml:3: get_url: argument "checksum": sha256 digest must be 64 hex digits, got "abc"`},
		{"get_url checksum sha1 len", "get_url: {url: 'https://h/f', dest: /x, checksum: 'sha1:" + strings.Repeat("a", 64) + "'}", `site.yml:3: get_url: argument "checksum": sha1 digest must be 40 hex digits`},
		{"get_url checksum not hex", "get_url: {url: 'https://h/f', dest: /x, checksum: 'sha256:" + strings.Repeat("g", 64) + "'}", `site.yml:3: get_url: argument "checksum": sha256 digest must be 64 hex digits`},
		{"get_url checksum list relative", "get_url: {url: 'https://h/f', dest: /x, checksum: 'sha256:file://SUMS'}", `site.yml:3: get_url: argument "checksum": checksum list file://SUMS: want an absolute path`},
		{"unarchive checksum", "unarchive: {src: a.tgz, dest: /x, checksum: 'sha256'}", `site.yml:3: unarchive: argument "checksum": want sha256:<hex>`},
		// certificate usages
		{"x509 usage unknown", "x509: {path: /p, name: n, ca_name: ca, usages: [server_auth, code_signing]}", `site.yml:3: x509: argument "usages": "code_signing" is not one of server_auth, client_auth`},
		{"x509 usage string", "x509: {path: /p, name: n, ca_name: ca, usages: server}", `site.yml:3: x509: argument "usages": "server" is not one of server_auth, client_auth`},
		// etcd arguments that cannot work
		{"etcd endpoint no scheme", "etcd: {endpoint: '10.0.0.1:2379'}", `site.yml:3: etcd: argument "endpoint": want an http:// or https:// URL with a host, got "10.0.0.1:2379"`},
		{"etcd endpoints no scheme", "etcd: {endpoints: ['https://10.0.0.1:2379', '10.0.0.2:2379']}", `site.yml:3: etcd: argument "endpoints": want an http:// or https:// URL with a host, got "10.0.0.2:2379"`},
		{"etcd endpoint and endpoints", "etcd: {endpoint: 'https://a:2379', endpoints: ['https://b:2379']}", `site.yml:3: etcd: endpoint and endpoints are mutually exclusive`},
		{"etcd peer url no scheme", "etcd:\n        action: member_add\n        name: e4\n        peer_urls: ['10.0.0.4:2380']", `site.yml:6: etcd: argument "peer_urls": want an http:// or https:// URL with a host, got "10.0.0.4:2380"`},
		{"etcd member_add without peer urls", "etcd: {action: member_add, name: e4}", `site.yml:3: etcd: action=member_add needs "peer_urls"`},
		{"etcd member_add without name", "etcd: {action: member_add, peer_urls: ['https://10.0.0.4:2380']}", `site.yml:3: etcd: action=member_add needs "name"`},
		{"etcd id not hex", "etcd: {action: member_remove, id: xyz}", `site.yml:3: etcd: argument "id": "xyz" is not a hexadecimal id`},
		{"etcd name and id", "etcd: {action: member_remove, name: e1, id: 8e9e05c52164694d}", `site.yml:3: etcd: name and id are mutually exclusive`},
		// arguments that need or exclude each other
		{"file link without src", "file: {path: /x, state: link}", `site.yml:3: file: state=link needs "src"`},
		{"file hard without src", "file:\n        path: /x\n        state: hard", `site.yml:3: file: state=hard needs "src"`},
		{"copy src and content", "copy: {src: a, content: b, dest: /x}", `site.yml:3: copy: content and src are mutually exclusive`},
		{"lineinfile after and before", "lineinfile: {path: /x, line: a, insertafter: a, insertbefore: b}", `site.yml:3: lineinfile: insertafter and insertbefore are mutually exclusive`},
		{"lineinfile regexp and search_string", "lineinfile: {path: /x, line: a, regexp: a, search_string: b}", `site.yml:3: lineinfile: regexp and search_string are mutually exclusive`},
		{"lineinfile no line", "lineinfile: {path: /x, regexp: a}", `site.yml:3: lineinfile: state=present (the default) needs "line"`},
		{"lineinfile present no line", "lineinfile: {path: /x, regexp: a, state: present}", `site.yml:3: lineinfile: state=present needs "line"`},
		{"blockinfile after and before", "blockinfile: {path: /x, block: a, insertafter: a, insertbefore: b}", `site.yml:3: blockinfile: insertafter and insertbefore are mutually exclusive`},
		// validate needs the temporary file
		{"copy validate without %s", "copy: {src: a, dest: /x, validate: 'visudo -cf'}", `site.yml:3: copy: argument "validate": must contain %s`},
		{"template validate without %s", "template: {src: a.tmpl, dest: /x, validate: 'nginx -t'}", `site.yml:3: template: argument "validate": must contain %s`},
		{"lineinfile validate without %s", "lineinfile: {path: /x, line: a, validate: 'sshd -t'}", `site.yml:3: lineinfile: argument "validate": must contain %s`},
		{"blockinfile validate without %s", "blockinfile: {path: /x, block: a, validate: 'sshd -t'}", `site.yml:3: blockinfile: argument "validate": must contain %s`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := loadTask(t, c.task)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %q", err, c.want)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("%v is not a LoadError (no file and line)", err)
			}
		})
	}
}

// The same arguments pass when their value is right, or templated (the
// rule is applied to the rendered value when the module runs).
func TestArgKindsAcceptGoodAndTemplated(t *testing.T) {
	for _, task := range []string{
		"file: {path: /x, mode: '0644'}",
		"file: {path: /x, mode: 0755}",
		"file: {path: /x, mode: 'u=rw,g=r,o='}",
		"file: {path: /x, mode: 'a+X'}",
		"file: {path: /x, mode: '{{ .m }}'}",
		"file: {path: /x, state: link, src: /y}",
		"file: {path: /x, state: '{{ .s }}'}",
		"copy: {src: a, dest: /x, mode: preserve}",
		"copy: {content: a, dest: /x, validate: 'visudo -cf %s'}",
		"copy: {content: a, dest: /x, validate: '{{ .v }}'}",
		"lineinfile: {path: /x, regexp: '^a=', line: a=1}",
		"lineinfile: {path: /x, regexp: '{{ .re }}', line: a=1}",
		"lineinfile: {path: /x, regexp: 'a', state: absent}",
		"lineinfile: {path: /x, line: a, insertafter: EOF}",
		"wait_for: {port: 2379}",
		"wait_for: {port: '{{ .p }}'}",
		"uri: {url: 'https://h:6443/healthz', status_code: [200, 204]}",
		"uri: {url: 'http://h/', status_code: '200,201'}",
		"uri: {url: '{{ .u }}', status_code: '{{ .codes }}'}",
		"uri: {url: 'https://h/', status_code: ['{{ .c }}', 200]}",
		"get_url: {url: 'file:///srv/a.tgz', dest: /x, checksum: 'sha256:" + strings.Repeat("A", 64) + "'}",
		"get_url: {url: 'https://h/a', dest: /x, checksum: 'sha256:file:///srv/SHA256SUMS'}",
		"get_url: {url: 'https://h/a', dest: /x, checksum: 'sha256:{{ .sum }}'}",
		"x509: {path: /p, name: n, ca_name: ca, usages: [server_auth, client_auth]}",
		"x509: {path: /p, name: n, ca_name: ca, usages: ['{{ .u }}']}",
	} {
		if err := loadTask(t, task); err != nil {
			t.Errorf("%s: %v", task, err)
		}
	}
}
