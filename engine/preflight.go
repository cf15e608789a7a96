package engine

import (
	"errors"
	"strings"

	"gokube/inventory"
)

// checkAgainstInventory refuses, before the first play runs, what the
// inventory already shows cannot work: a play's literal host pattern that
// does not parse, and a literal delegate_to naming a host the inventory
// does not have (runs would otherwise stop at a later play, or fail on the
// host, after earlier plays changed hosts). Templated values are decided
// when they are rendered.
func checkAgainstInventory(pb *Playbook, inv *inventory.Inventory) error {
	var errs []error
	for _, pl := range pb.Plays {
		if !strings.Contains(pl.Hosts, "{{") {
			if _, err := inv.Match(pl.Hosts); err != nil {
				errs = append(errs, errAt(pl.Pos, "hosts: %w", err))
			}
		}
		walkTasks(append(append([]*Task(nil), pl.Tasks...), pl.Handlers...), func(t *Task) {
			d := t.Delegate
			if d == "" || strings.Contains(d, "{{") || isLocalName(d) {
				return
			}
			if _, ok := inv.Host(d); !ok {
				errs = append(errs, errAt(t.Pos, "delegate_to: host %q is not in the inventory", d))
			}
		})
	}
	return errors.Join(errs...)
}

// walkTasks calls f for every task under ts, blocks included.
func walkTasks(ts []*Task, f func(*Task)) {
	for _, t := range ts {
		f(t)
		walkTasks(t.Block, f)
		walkTasks(t.Rescue, f)
		walkTasks(t.Always, f)
	}
}
