// Package timeline draws a run as a picture: one row per host, one bar per
// task coloured by its outcome, with the round trips and bytes of each, the
// slowest tasks marked, handlers hatched and plays and serial batches
// shown. The output is one self-contained SVG or HTML file (no script, no
// font or stylesheet from the network), so it opens anywhere and can be
// attached to a ticket or put in a README.
package timeline

import (
	"fmt"
	"html"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gokube/internal/atomicfile"
)

// Bar is one task on one host.
type Bar struct {
	Host, Task string
	Status     string // ok, changed, failed, skipping, unreachable
	Start, End time.Duration
	RoundTrips int64
	Bytes      int64
	Handler    bool
	Play       string
	Batch      int
}

// Run is what is drawn.
type Run struct {
	Title string
	Hosts []string // one row each, in this order
	Bars  []Bar
	Total time.Duration
	// Slowest is how many of the longest bars are marked (default 5).
	Slowest int
}

// colour is an outcome's colour; the legend and the bars use the same.
func colour(status string) string {
	switch status {
	case "changed":
		return "#e0a526"
	case "failed":
		return "#d64545"
	case "unreachable":
		return "#8e2c9c"
	case "skipping":
		return "#9aa5b1"
	}
	return "#3fa34d"
}

// statuses is the legend's order.
func statuses() []string { return []string{"ok", "changed", "failed", "unreachable", "skipping"} }

const (
	rowH    = 28
	barH    = 18
	plotW   = 1000
	topH    = 76 // title, two lines of play/batch labels, axis
	bottomH = 34 // legend
	charW   = 7.2
)

// Write writes the timeline to path: HTML for .html/.htm, SVG for .svg.
func Write(path string, r Run) error {
	var render func(io.Writer, Run) error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".html", ".htm":
		render = HTML
	case ".svg":
		render = SVG
	default:
		return fmt.Errorf("timeline %s: the name must end in .html or .svg", path)
	}
	var b strings.Builder
	if err := render(&b, r); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	if err := atomicfile.Write(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	return nil
}

// layout holds the geometry shared by the drawing functions.
type layout struct {
	labelW  float64
	width   float64
	height  float64
	total   time.Duration
	rowOf   map[string]int
	slowest map[int]int // bar index -> rank (1 = slowest)
}

func newLayout(r Run) layout {
	l := layout{rowOf: map[string]int{}, slowest: map[int]int{}}
	longest := 6
	for i, h := range r.Hosts {
		l.rowOf[h] = i
		longest = max(longest, len(h))
	}
	l.labelW = math.Ceil(float64(longest)*charW) + 24
	l.width = l.labelW + plotW + 20
	l.height = topH + float64(len(r.Hosts))*rowH + bottomH
	l.total = r.Total
	for _, b := range r.Bars {
		if b.End > l.total {
			l.total = b.End
		}
	}
	if l.total <= 0 {
		l.total = time.Millisecond
	}
	n := r.Slowest
	if n == 0 {
		n = 5
	}
	idx := make([]int, 0, len(r.Bars))
	for i, b := range r.Bars {
		if b.End > b.Start {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return r.Bars[idx[a]].End-r.Bars[idx[a]].Start > r.Bars[idx[b]].End-r.Bars[idx[b]].Start
	})
	for rank, i := range idx[:min(n, len(idx))] {
		l.slowest[i] = rank + 1
	}
	return l
}

func (l layout) x(d time.Duration) float64 {
	return l.labelW + float64(d)/float64(l.total)*plotW
}

// SVG writes the timeline as a standalone SVG document.
func SVG(w io.Writer, r Run) error {
	var b strings.Builder
	l := newLayout(r)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", l.width, l.height, l.width, l.height)
	b.WriteString(`<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#ffffff" fill-opacity="0.45"/></pattern></defs>` + "\n")
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="8" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", esc(r.Title))
	drawGroups(&b, r, l)
	drawAxis(&b, l, len(r.Hosts))
	for i, h := range r.Hosts {
		y := float64(topH + i*rowH)
		if i%2 == 1 {
			fmt.Fprintf(&b, `<rect x="0" y="%.0f" width="%.0f" height="%d" fill="#f3f5f8"/>`+"\n", y, l.width, rowH)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n", l.labelW-10, y+rowH/2+4, esc(h))
	}
	for i, bar := range r.Bars {
		drawBar(&b, l, i, bar)
	}
	drawLegend(&b, l)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// drawGroups marks where each play and serial batch starts: a dashed line
// across the rows and a label above them.
func drawGroups(b *strings.Builder, r Run, l layout) {
	type group struct {
		play  string
		batch int
		start time.Duration
	}
	var groups []group
	seen := map[string]int{}
	for _, bar := range r.Bars {
		k := fmt.Sprintf("%s\x00%d", bar.Play, bar.Batch)
		if i, ok := seen[k]; ok {
			if bar.Start < groups[i].start {
				groups[i].start = bar.Start
			}
			continue
		}
		seen[k] = len(groups)
		groups = append(groups, group{bar.Play, bar.Batch, bar.Start})
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].start < groups[j].start })
	bottom := float64(topH + len(r.Hosts)*rowH)
	// Labels go on two lines so plays starting close together stay
	// readable; a label that would run off the right edge ends at its
	// line; one that fits on neither line is left out (the dashed line
	// stays, and every bar's tooltip names its play).
	lineEnd := [2]float64{-1e9, -1e9}
	for _, g := range groups {
		x := l.x(g.start)
		label := "play: " + g.play
		if g.batch > 0 || countBatches(r, g.play) > 1 {
			label += fmt.Sprintf(" · batch %d", g.batch+1)
		}
		w := float64(len([]rune(label))) * 6.3
		tx, anchor, from := x+3, "start", x+3
		if tx+w > l.width-4 {
			tx, anchor, from = x-3, "end", x-3-w
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="24" x2="%.1f" y2="%.0f" stroke="#5b6b7f" stroke-dasharray="3,3"/>`+"\n", x, x, bottom)
		for line := range lineEnd {
			if from >= lineEnd[line]+8 {
				lineEnd[line] = from + w
				fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="#5b6b7f" font-size="11" text-anchor="%s">%s</text>`+"\n", tx, 34+line*12, anchor, esc(label))
				break
			}
		}
	}
}

func countBatches(r Run, play string) int {
	n := 0
	for _, bar := range r.Bars {
		if bar.Play == play && bar.Batch+1 > n {
			n = bar.Batch + 1
		}
	}
	return n
}

// drawAxis draws time ticks at a round step (1, 2 or 5 times a power of
// ten) giving about ten ticks.
func drawAxis(b *strings.Builder, l layout, rows int) {
	step := niceStep(l.total / 10)
	bottom := float64(topH + rows*rowH)
	fmt.Fprintf(b, `<line x1="%.0f" y1="%d" x2="%.0f" y2="%d" stroke="#333"/>`+"\n", l.labelW, topH-2, l.labelW+plotW, topH-2)
	for t := time.Duration(0); t <= l.total; t += step {
		x := l.x(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#e1e5ea"/>`+"\n", x, topH-6, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10" fill="#333">%s</text>`+"\n", x, topH-9, fmtDur(t))
	}
}

func niceStep(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Millisecond
	}
	p := time.Duration(1)
	for p*10 <= d {
		p *= 10
	}
	for _, m := range []time.Duration{1, 2, 5, 10} {
		if p*m >= d {
			return p * m
		}
	}
	return p * 10
}

func drawBar(b *strings.Builder, l layout, i int, bar Bar) {
	row, ok := l.rowOf[bar.Host]
	if !ok {
		return
	}
	x0, x1 := l.x(bar.Start), l.x(bar.End)
	wid := math.Max(x1-x0, 3) // a task of no time still shows
	y := float64(topH+row*rowH) + (rowH-barH)/2
	col := colour(bar.Status)
	d := bar.End - bar.Start
	tip := fmt.Sprintf("%s\n%s: %s in %s, %d round trip(s), %s\nplay: %s", bar.Task, bar.Host, bar.Status, fmtDur(d), bar.RoundTrips, fmtBytes(bar.Bytes), bar.Play)
	if bar.Handler {
		tip += "\nhandler"
	}
	rank := l.slowest[i]
	if rank > 0 {
		tip += fmt.Sprintf("\nslowest #%d", rank)
	}
	fmt.Fprintf(b, `<g><title>%s</title>`, esc(tip))
	fmt.Fprintf(b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%d" fill="%s"/>`, x0, y, wid, barH, col)
	if bar.Handler {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%d" fill="url(#hatch)"/>`, x0, y, wid, barH)
	}
	if rank > 0 {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%d" fill="none" stroke="#111" stroke-width="2"/>`, x0, y, wid, barH)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" font-size="9" font-weight="bold" fill="#111">#%d</text>`, x0, y-1, rank)
	}
	if label := fitText(bar.Task, wid-6); label != "" {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" font-size="10" fill="#111">%s</text>`, x0+3, y+barH/2+4, esc(label))
	}
	b.WriteString("</g>\n")
}

// fitText shortens s to what fits in width pixels, or "" when too little.
func fitText(s string, width float64) string {
	n := int(width / 6)
	if n < 4 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func drawLegend(b *strings.Builder, l layout) {
	y := l.height - bottomH + 12
	x := l.labelW
	for _, st := range statuses() {
		fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" font-size="11">%s</text>`+"\n", x, y, colour(st), x+14, y+9, st)
		x += 14 + float64(len(st))*charW + 18
	}
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="#777"/><rect x="%.0f" y="%.0f" width="10" height="10" fill="url(#hatch)"/><text x="%.0f" y="%.0f" font-size="11">handler</text>`+"\n", x, y, x, y, x+14, y+9)
	x += 14 + 7*charW + 18
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="none" stroke="#111" stroke-width="2"/><text x="%.0f" y="%.0f" font-size="11">#n slowest tasks</text>`+"\n", x, y, x+14, y+9)
}

// HTML writes a self-contained page: a summary, the SVG and a table of the
// slowest tasks with their round trips and bytes.
func HTML(w io.Writer, r Run) error {
	var svg strings.Builder
	if err := SVG(&svg, r); err != nil {
		return err
	}
	l := newLayout(r)
	var rts, bytes int64
	tasks := map[string]bool{}
	for _, bar := range r.Bars {
		rts += bar.RoundTrips
		bytes += bar.Bytes
		tasks[bar.Task] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title>\n", esc(r.Title))
	b.WriteString(`<style>body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:16px;color:#111}` +
		`table{border-collapse:collapse;margin-top:12px}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}` +
		`td.n{text-align:right}.sum{color:#444}</style></head><body>` + "\n")
	fmt.Fprintf(&b, "<p class=\"sum\">%d host(s), %d task(s), %s in all, %d round trip(s), %s on the network. Hover a bar for its details.</p>\n",
		len(r.Hosts), len(tasks), fmtDur(l.total), rts, fmtBytes(bytes))
	b.WriteString(svg.String())
	type ranked struct {
		rank int
		bar  Bar
	}
	var slow []ranked
	for i, rank := range l.slowest {
		slow = append(slow, ranked{rank, r.Bars[i]})
	}
	sort.Slice(slow, func(i, j int) bool { return slow[i].rank < slow[j].rank })
	if len(slow) > 0 {
		b.WriteString("<table><tr><th>#</th><th>task</th><th>host</th><th>outcome</th><th>time</th><th>round trips</th><th>bytes</th></tr>\n")
		for _, s := range slow {
			fmt.Fprintf(&b, "<tr><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td class=\"n\">%s</td><td class=\"n\">%d</td><td class=\"n\">%s</td></tr>\n",
				s.rank, esc(s.bar.Task), esc(s.bar.Host), esc(s.bar.Status), fmtDur(s.bar.End-s.bar.Start), s.bar.RoundTrips, fmtBytes(s.bar.Bytes))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
