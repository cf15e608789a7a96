package timeline

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() Run {
	ms := time.Millisecond
	return Run{Title: "t <&>", Hosts: []string{"a", "b", "c"}, Total: 900 * ms, Bars: []Bar{
		{Host: "a", Task: "facts", Status: "ok", Start: 0, End: 200 * ms, RoundTrips: 9, Bytes: 8000, Play: "p"},
		{Host: "b", Task: "facts", Status: "ok", Start: 0, End: 250 * ms, RoundTrips: 9, Bytes: 8000, Play: "p"},
		{Host: "a", Task: "copy", Status: "changed", Start: 200 * ms, End: 500 * ms, RoundTrips: 2, Bytes: 3000, Play: "p"},
		{Host: "b", Task: "copy", Status: "failed", Start: 250 * ms, End: 300 * ms, RoundTrips: 1, Play: "p"},
		{Host: "a", Task: "restart", Status: "changed", Start: 500 * ms, End: 600 * ms, Handler: true, Play: "p"},
		{Host: "c", Task: "facts", Status: "unreachable", Start: 600 * ms, End: 900 * ms, Play: "p", Batch: 1},
		{Host: "c", Task: "skip me", Status: "skipping", Start: 900 * ms, End: 900 * ms, Play: "p", Batch: 1},
	}}
}

// The SVG is well-formed XML with one row label per host, one bar group
// per task, the slowest marked, handlers hatched, batches labelled, and
// every bar's tooltip giving outcome, round trips and bytes.
func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := SVG(&b, sample()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	d := xml.NewDecoder(strings.NewReader(out))
	groups, titles := 0, []string{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, out)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "g":
				groups++
			case "title":
				tok, _ := d.Token()
				if cd, ok := tok.(xml.CharData); ok {
					titles = append(titles, string(cd))
				}
			}
		}
	}
	if groups != 7 || len(titles) != 7 {
		t.Fatalf("%d bar groups, %d tooltips; want 7", groups, len(titles))
	}
	if !strings.Contains(titles[2], "copy\na: changed in 300ms, 2 round trip(s), 2.9 KiB") {
		t.Errorf("tooltip %q", titles[2])
	}
	for _, want := range []string{">a</text>", ">b</text>", ">c</text>", "t &lt;&amp;&gt;", "url(#hatch)", ">#1</text>", "play: p · batch 2", "handler\nslowest"} {
		if !strings.Contains(out, want) && !strings.Contains(strings.Join(titles, "|"), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if n := strings.Count(out, `fill="#111">#`); n != 5 {
		t.Errorf("want 5 slowest marks, got %d", n)
	}
	if strings.Count(out, "http") != 1 { // the SVG namespace only
		t.Error("the SVG references the network")
	}
}

// Write picks the format by extension, writes atomically, refuses others.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "run.html"), sample()); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "run.html"))
	if !bytes.HasPrefix(page, []byte("<!DOCTYPE html>")) || !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte("3 host(s), 4 task(s)")) {
		t.Errorf("page:\n%s", page)
	}
	if bytes.Contains(page, []byte("<script")) || bytes.Contains(page, []byte("<link")) {
		t.Error("the page must be self-contained")
	}
	if err := Write(filepath.Join(dir, "run.svg"), sample()); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "run.png"), sample()); err == nil {
		t.Fatal(".png accepted")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestNiceStep(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		90 * time.Millisecond: 100 * time.Millisecond, 140 * time.Millisecond: 200 * time.Millisecond,
		3 * time.Second: 5 * time.Second, 0: time.Millisecond,
	} {
		if got := niceStep(in); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", in, got, want)
		}
	}
}
