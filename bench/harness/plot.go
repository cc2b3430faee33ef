package harness

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Plot writes a grouped bar chart of each row's latency percentiles to path
// (PNG).
func Plot(path string, rows []Row) error {
	p := plot.New()
	p.Title.Text = "Latency at 1000 rps, 16 connections (median of runs)"
	p.Y.Label.Text = "ms"
	p.Legend.Top = true
	p.Legend.Left = true
	names := []string{"p50", "p90", "p99", "p99.9"}
	colors := []color.Color{
		color.RGBA{0x4c, 0x72, 0xb0, 0xff}, color.RGBA{0xdd, 0x84, 0x52, 0xff},
		color.RGBA{0x55, 0xa8, 0x68, 0xff}, color.RGBA{0xc4, 0x4e, 0x52, 0xff},
		color.RGBA{0x81, 0x72, 0xb3, 0xff},
	}
	w := vg.Points(14)
	for i, r := range rows {
		v := plotter.Values{r.P50ms, r.P90ms, r.P99ms, r.P999ms}
		bars, err := plotter.NewBarChart(v, w)
		if err != nil {
			return fmt.Errorf("plot %s: %w", r.Name, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = colors[i%len(colors)]
		bars.Offset = w * vg.Length(float64(i)-float64(len(rows)-1)/2)
		p.Add(bars)
		p.Legend.Add(r.Name, bars)
	}
	p.NominalX(names...)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
