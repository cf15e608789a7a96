package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestWarmRunRoundTrips runs the benchmark's 31 tasks on 3 lab hosts twice
// and asserts that the warm run changes nothing and costs at most 12 round
// trips per host, SSH handshake included (counts, not timings).
func TestWarmRunRoundTrips(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	work := t.TempDir()
	inv := e.inventory(t, work, "bench", map[string][]int{"bench": {4, 5, 6}})
	pb := filepath.Join(e.root, "bench/gokube/site.yml")
	if r := e.play(t, ctx, "-i", inv, pb); r.code != 0 {
		t.Fatalf("cold run: exit %d\n%s", r.code, r.out)
	}
	out, err := exec.CommandContext(ctx, e.bin, "play", "-i", inv, pb, "--output", "json").Output()
	if err != nil {
		t.Fatalf("warm run: %v\n%s", err, out)
	}
	var rep struct {
		Hosts map[string]struct {
			Ok         int `json:"ok"`
			Changed    int `json:"changed"`
			RoundTrips int `json:"round_trips"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if len(rep.Hosts) != 3 {
		t.Fatalf("want 3 hosts in the report, got %d: %s", len(rep.Hosts), out)
	}
	for h, s := range rep.Hosts {
		t.Logf("%s: ok=%d changed=%d round_trips=%d", h, s.Ok, s.Changed, s.RoundTrips)
		if s.Changed != 0 {
			t.Errorf("%s: warm run changed=%d", h, s.Changed)
		}
		if s.RoundTrips == 0 || s.RoundTrips > 12 {
			t.Errorf("%s: %d round trips for a warm run of 31 tasks, want 1..12", h, s.RoundTrips)
		}
	}
}
