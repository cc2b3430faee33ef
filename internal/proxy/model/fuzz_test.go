package model

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

var fuzzTypes = []string{xdsclient.TypeListener, xdsclient.TypeRoute, xdsclient.TypeCluster, xdsclient.TypeEndpoint}

// seeds are valid resources of each type, the starting points for fuzzing.
func seeds() []struct {
	typ uint8
	m   proto.Message
} {
	rc := xdstest.RouteConfig("http_proxy",
		xdstest.VirtualHost("reviews:9080", []string{"reviews:9080", "reviews"}, xdstest.PrefixRoute("/", "c")),
		xdstest.VirtualHost("split", []string{"*"}, xdstest.WeightedRoute(map[string]uint32{"a": 1, "b": 3}), xdstest.RegexRoute("/x/[0-9]+", "c")))
	return []struct {
		typ uint8
		m   proto.Message
	}{
		{0, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy")},
		{0, xdstest.InlineListener("inbound|9080", "127.0.0.1:15006", rc)},
		{1, rc},
		{2, xdstest.EDSCluster("outbound|9080||reviews.default.svc.cluster.local")},
		{2, xdstest.StaticCluster("inbound|9080||", "127.0.0.1:9080")},
		{3, xdstest.CLA("c", "10.0.0.1:15006", "10.0.0.2:15006")},
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpus with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzApply")
	if !*update {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(seeds()) {
			t.Fatalf("seed corpus missing in %s (run go test -run TestWriteFuzzCorpus -update): %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds() {
		b, err := proto.Marshal(s.m)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", s.typ, b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzApply feeds arbitrary bytes as each resource type: compile must
// return an error or a model, never panic.
func FuzzApply(f *testing.F) {
	f.Fuzz(func(t *testing.T, typ byte, data []byte) {
		c := New(Options{})
		typeURL := fuzzTypes[int(typ)%len(fuzzTypes)]
		// Give the compiler something to build with, so a valid input
		// runs all the way through model building.
		c.Apply(xdsclient.TypeCluster, "0", nil)
		c.Apply(xdsclient.TypeListener, "0", nil)
		c.Apply(typeURL, "1", []*anypb.Any{{TypeUrl: typeURL, Value: data}})
	})
}
