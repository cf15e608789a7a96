package modules

import (
	"context"
	"testing"
)

// BenchmarkUnchanged measures one task that finds nothing to do, on the
// control machine and (with GOKUBE_LAB_DIR) on a lab host over SSH; it
// reports round trips per task next to the time.
//
//	GOKUBE_LAB_DIR=/var/lib/gokube/lab/gk go test -run '^$' -bench Unchanged ./modules/
func BenchmarkUnchanged(b *testing.B) {
	for _, tg := range targets(b) {
		p := tg.dir + "/bench.conf"
		hostSh(b, tg, "printf 'a=1\\n' > "+p+" && chmod 0644 "+p+" && mkdir -p "+tg.dir+"/benchdir")
		cases := []struct {
			name string
			m    Module
			args map[string]any
		}{
			{"copy", copyModule{}, map[string]any{"content": "a=1\n", "dest": p, "mode": "0644"}},
			{"file", fileModule{}, map[string]any{"path": tg.dir + "/benchdir", "state": "directory"}},
			{"stat", statModule{}, map[string]any{"path": p}},
			{"lineinfile", lineInFile{}, map[string]any{"path": p, "line": "a=1"}},
		}
		if tg.lab {
			cases = append(cases, struct {
				name string
				m    Module
				args map[string]any
			}{"systemd", systemdModule{alias: "systemd"}, map[string]any{"name": "ssh", "state": "started"}})
		}
		for _, c := range cases {
			b.Run(tg.name+"/"+c.name, func(b *testing.B) {
				env := tg.env()
				start := tg.conn.RoundTrips()
				for i := 0; i < b.N; i++ {
					res, err := c.m.Run(context.Background(), env, c.args)
					if err != nil || res.Changed || res.Failed {
						b.Fatalf("%+v %v", res, err)
					}
				}
				b.ReportMetric(float64(tg.conn.RoundTrips()-start)/float64(b.N), "roundtrips/op")
			})
		}
	}
}
