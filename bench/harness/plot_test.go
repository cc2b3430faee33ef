package harness

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestPlotWritesAPNG draws the rows of a run, one of them without a
// figure (a log scale has no zero), into a PNG that decodes.
func TestPlotWritesAPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.png")
	rows := []Row{
		{Name: "direct", P50ms: 0.106, P90ms: 0.175, P99ms: 0.255, P999ms: 1.05},
		{Name: "weft", P50ms: 0.234, P90ms: 0.343, P99ms: 0.488, P999ms: 1.97},
		{Name: "broken"},
	}
	if err := Plot(path, rows); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("latency.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("latency.png is %v, want a readable size", b)
	}
}
