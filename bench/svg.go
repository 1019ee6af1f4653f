package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

var lineColor = map[string]string{
	"gormmutex":              "#d62728",
	"gormmutex-async":        "#ff9896",
	"gormmutex-gorm/row":     "#e377c2",
	"gormmutex-sql/prepared": "#bcbd22",
	"django":                 "#1f77b4",
	"pg-advisory":            "#2ca02c",
	"mysql-get_lock":         "#2ca02c",
	"redsync":                "#9467bd",
	"gormmutex-sql":          "#ff7f0e",
}

// siCount writes 2000 as 2k and 1000000 as 1M.
func siCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// svg draws one panel per SQL store: throughput (ops/s) against workers
// (1, 2, 4, 8; one key per worker, fail fast) for each contender on it, and
// redsync on Redis in every panel for comparison.
func (r *runner) svg(rows []Row) string {
	workers := []int{1, 2, 4, 8}
	scn := map[int]string{1: "a", 2: "w2", 4: "w4", 8: "c"}
	type series struct {
		name string
		y    []float64
	}
	type panel struct {
		title  string
		series []series
	}
	var panels []panel
	for _, store := range []string{"postgres", "mysql", "sqlite"} {
		b := r.backend(store)
		if b == nil {
			continue
		}
		p := panel{title: b.label()}
		add := func(st, name, label string) {
			s := series{name: label, y: make([]float64, len(workers))}
			found := false
			for i, w := range workers {
				if row, ok := find(rows, st, scn[w], name); ok {
					s.y[i], found = row.OpsPerSec, true
				} else {
					s.y[i] = math.NaN()
				}
			}
			if found {
				p.series = append(p.series, s)
			}
		}
		seen := []string{}
		for _, row := range rows {
			if row.Store == store && !contains(seen, row.Contender) {
				seen = append(seen, row.Contender)
				add(store, row.Contender, row.Contender)
			}
		}
		add("redis", "redsync", "redsync (Redis)")
		if len(p.series) > 0 {
			panels = append(panels, p)
		}
	}
	const pw, ph, ml, mr, mt, mb = 340.0, 260.0, 62.0, 14.0, 34.0, 46.0
	width := float64(max(len(panels), 1))*(pw+mr+ml) + ml
	nmax := 0
	for _, p := range panels {
		nmax = max(nmax, len(p.series))
	}
	height := mt + ph + mb + 30 + 15*float64(nmax)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="18" font-size="14" font-weight="bold">Lock throughput against workers (ops/s, log scale; one key per worker, fail fast; %s windows x %d rounds)</text>`+"\n", ml, r.cfg.dur, r.cfg.rounds)
	for pi, p := range panels {
		x0 := ml + float64(pi)*(pw+mr+ml)
		y0 := mt + 10
		// A log scale: the contenders span two orders of magnitude.
		lo, hi := math.Inf(1), 0.0
		for _, s := range p.series {
			for _, v := range s.y {
				if !math.IsNaN(v) && v > 0 {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
		}
		if hi == 0 {
			lo, hi = 1, 10
		}
		lmin, lmax := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if lmax == lmin {
			lmax++
		}
		px := func(i int) float64 { return x0 + 20 + float64(i)*(pw-40)/float64(len(workers)-1) }
		py := func(v float64) float64 { return y0 + ph - (math.Log10(v)-lmin)/(lmax-lmin)*ph }
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" font-weight="bold">%s</text>`+"\n", x0, y0-6, html.EscapeString(p.title))
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0, y0, pw, ph)
		for e := lmin; e <= lmax; e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if math.Log10(v) > lmax+1e-9 {
					break
				}
				stroke := "#eeeeee"
				if m == 1 {
					stroke = "#c8c8c8"
				}
				y := py(v)
				fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x0, y, x0+pw, y, stroke)
				fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, y+4, siCount(v))
			}
		}
		for i, w := range workers {
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", px(i), y0+ph+16, w)
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">workers</text>`+"\n", x0+pw/2, y0+ph+32)
		fmt.Fprintf(&sb, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">ops/s</text>`+"\n", x0-48, y0+ph/2)
		for si, s := range p.series {
			base := strings.TrimSuffix(s.name, " (Redis)")
			color := lineColor[base]
			if color == "" {
				color = "#7f7f7f"
			}
			dash := ""
			if base == "redsync" {
				dash = ` stroke-dasharray="5,3"`
			}
			var pts []string
			for i, v := range s.y {
				if !math.IsNaN(v) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(i), py(v)))
				}
			}
			fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), color, dash)
			for i, v := range s.y {
				if !math.IsNaN(v) {
					fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s, %d workers: %s ops/s</title></circle>`+"\n", px(i), py(v), color, html.EscapeString(s.name), workers[i], f0(v))
				}
			}
			// Legend, under the panel.
			ly := y0 + ph + 52 + float64(si)*15
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", x0+8, ly-4, x0+26, ly-4, color, dash)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x0+30, ly, html.EscapeString(s.name))
		}
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}
