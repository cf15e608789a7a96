package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestListOutputJSON: --list-tasks and --list-hosts honour --output json
// with one JSON document (tags applied, --limit applied), as a run does.
func TestListOutputJSON(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "inv.ini"), []byte("[web]\nw1\nw2\n[db]\nd1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yml"), []byte(`- name: web
  hosts: web
  gather_facts: true
  tasks:
    - name: one
      debug: {msg: x}
      tags: [a]
    - block:
        - name: two
          debug: {msg: y}
- name: db
  hosts: db
  tags: [d]
  tasks: []
`), 0o644)
	type task struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
		Pos  string   `json:"pos"`
	}
	type play struct {
		Play    int       `json:"play"`
		Name    string    `json:"name"`
		Pattern string    `json:"pattern"`
		Tags    []string  `json:"tags"`
		Hosts   *[]string `json:"hosts"`
		Tasks   *[]task   `json:"tasks"`
	}
	pb := filepath.Join(dir, "p.yml")
	one := task{"one", []string{"a"}, pb + ":5"}
	two := task{"two", []string{}, pb + ":9"}
	hosts := func(h ...string) *[]string {
		if h == nil {
			h = []string{}
		}
		return &h
	}
	tasks := func(ts ...task) *[]task {
		if ts == nil {
			ts = []task{}
		}
		return &ts
	}
	for _, tc := range []struct {
		args []string
		want []play
	}{
		{[]string{"--list-tasks"}, []play{
			{1, "web", "web", []string{}, nil, tasks(one, two)},
			{2, "db", "db", []string{"d"}, nil, tasks()}}},
		{[]string{"--list-tasks", "--tags", "a"}, []play{
			{1, "web", "web", []string{}, nil, tasks(one)},
			{2, "db", "db", []string{"d"}, nil, tasks()}}},
		{[]string{"--list-hosts", "--limit", "w2:d1"}, []play{
			{1, "web", "web", []string{}, hosts("w2"), nil},
			{2, "db", "db", []string{"d"}, hosts("d1"), nil}}},
		{[]string{"--list-hosts", "--list-tasks", "--limit", "web"}, []play{
			{1, "web", "web", []string{}, hosts("w1", "w2"), tasks(one, two)},
			{2, "db", "db", []string{"d"}, hosts(), tasks()}}},
	} {
		cmd := newPlayCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append(append([]string{"-i", filepath.Join(dir, "inv.ini"), "--output", "json"}, tc.args...), pb))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		var doc struct {
			Playbook string `json:"playbook"`
			Plays    []play `json:"plays"`
		}
		dec := json.NewDecoder(&out)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil || dec.More() {
			t.Fatalf("%v: not one JSON document: %v\n%s", tc.args, err, out.String())
		}
		if doc.Playbook != pb || !reflect.DeepEqual(doc.Plays, tc.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.args, doc, tc.want)
		}
	}
}
