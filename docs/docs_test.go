// Package docs holds Weft's user documentation. Its test keeps the
// documentation honest: every YAML block in it must be valid Weft config.
package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/config"
)

// TestYAMLBlocksAreValid decodes and validates every ```yaml block of every
// page, as `weft apply` would.
func TestYAMLBlocksAreValid(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages found: %v", err)
	}
	blocks := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range yamlBlocks(string(b)) {
			blocks++
			name := page + "#" + string(rune('0'+i))
			if _, err := config.Decode(name, []byte(block)); err != nil {
				t.Errorf("%s: yaml block %d does not apply:\n%v\n%s", page, i+1, err, block)
			}
		}
	}
	if blocks < 5 {
		t.Errorf("found only %d yaml blocks; the pages should show working config", blocks)
	}
}

func yamlBlocks(md string) []string {
	var out []string
	for {
		start := strings.Index(md, "```yaml\n")
		if start < 0 {
			return out
		}
		md = md[start+len("```yaml\n"):]
		end := strings.Index(md, "```")
		if end < 0 {
			return out
		}
		out = append(out, md[:end])
		md = md[end+3:]
	}
}
