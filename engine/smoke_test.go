package engine

import "testing"

func TestSmoke(t *testing.T) {
	e := newEnv(t, "[web]\nnode-1\nnode-2\n", map[string]string{
		"site.yml": `
- hosts: web
  vars:
    greeting: "hello {{ .inventory_hostname }}"
  tasks:
    - name: write
      tfile: {path: "out-{{ .inventory_hostname }}", content: "{{ .greeting }}"}
      register: w
    - debug: var=w
    - debug: {msg: "{{ .ansible_default_ipv4.address }} {{ .ansible_distribution }}"}
`})
	r, err := e.run(e.opts("site.yml"))
	t.Log(e.out.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(e.requests())
	_ = r
}
