package harness

import (
	"fmt"
	"image/color"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot writes each row's latency percentiles to path (PNG): one line per
// row over p50, p90, p99 and p99.9, on a logarithmic scale, so that the
// rows' p50s stay as readable as their tails, which are ten times longer.
func Plot(path string, rows []Row) error {
	p := plot.New()
	p.Title.Text = "Latency at 1000 rps, 16 connections (median of runs)"
	p.Y.Label.Text = "ms (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	names := []string{"p50", "p90", "p99", "p99.9"}
	colors := []color.Color{
		color.RGBA{0x4c, 0x72, 0xb0, 0xff}, color.RGBA{0xdd, 0x84, 0x52, 0xff},
		color.RGBA{0x55, 0xa8, 0x68, 0xff}, color.RGBA{0xc4, 0x4e, 0x52, 0xff},
		color.RGBA{0x81, 0x72, 0xb3, 0xff}, color.RGBA{0x93, 0x78, 0x60, 0xff},
	}
	for i, r := range rows {
		pts := make(plotter.XYs, 0, len(names))
		for j, v := range []float64{r.P50ms, r.P90ms, r.P99ms, r.P999ms} {
			if v > 0 { // a log scale has no 0
				pts = append(pts, plotter.XY{X: float64(j), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", r.Name, err)
		}
		c := colors[i%len(colors)]
		line.Color, line.Width = c, vg.Points(1.5)
		points.Color, points.Shape = c, draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(r.Name, line, points)
	}
	p.NominalX(names...)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// logTicks labels the latency axis at 1, 2 and 5 of every power of ten
// from 10 µs to 10 s.
var logTicks = func() plot.ConstantTicks {
	var t plot.ConstantTicks
	for d := 0.01; d < 1e4; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := m * d
			t = append(t, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	return t
}()
