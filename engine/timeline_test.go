package engine

import "testing"

// Events carry what the timeline draws: when each task ran on its host,
// the round trips meanwhile, handlers, plays and serial batches.
func TestEventsForTimeline(t *testing.T) {
	e := newEnv(t, "node-1\nnode-2\n", map[string]string{"site.yml": `
- name: rolling
  hosts: all
  gather_facts: false
  serial: 1
  tasks:
    - name: change
      command: "true"
      notify: react
  handlers:
    - name: react
      command: "true"
`})
	r := mustRun(t, e, e.opts("site.yml"))
	if len(r.Events) != 4 {
		t.Fatalf("%d events: %+v", len(r.Events), r.Events)
	}
	byHost := map[string][]Event{}
	for _, ev := range r.Events {
		if ev.Start < 0 || ev.End < ev.Start || ev.End == 0 || ev.Play != "rolling" || ev.RoundTrips < 1 {
			t.Errorf("event %+v", ev)
		}
		byHost[ev.Host] = append(byHost[ev.Host], ev)
	}
	for i, h := range []string{"node-1", "node-2"} {
		evs := byHost[h]
		if len(evs) != 2 || evs[0].Handler || !evs[1].Handler || evs[0].Batch != i || evs[1].Batch != i {
			t.Errorf("%s: %+v", h, evs)
		}
	}
	// serial: 1 runs node-2's batch after node-1's has ended.
	if byHost["node-2"][0].Start < byHost["node-1"][1].End {
		t.Errorf("batches overlap: %+v", r.Events)
	}
}
