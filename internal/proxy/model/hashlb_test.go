package model

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/upstream"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

func TestCompileClusterHashLB(t *testing.T) {
	ring := func(lo, hi *wrapperspb.UInt64Value) func(c *clusterv3.Cluster) {
		return func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: lo, MaximumRingSize: hi}}
		}
	}
	maglev := func(size *wrapperspb.UInt64Value) func(c *clusterv3.Cluster) {
		return func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: size}}
		}
	}
	tests := []struct {
		name    string
		mutate  func(c *clusterv3.Cluster)
		want    upstream.ClusterSpec // LB and Hash
		wantErr []string
	}{
		{"ring hash defaults", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RING_HASH },
			upstream.ClusterSpec{LB: upstream.RingHash, Hash: upstream.HashConfig{MinRingSize: 1024, MaxRingSize: 8 << 20}}, nil},
		{"ring hash sizes", ring(wrapperspb.UInt64(2048), wrapperspb.UInt64(4096)),
			upstream.ClusterSpec{LB: upstream.RingHash, Hash: upstream.HashConfig{MinRingSize: 2048, MaxRingSize: 4096}}, nil},
		{"ring min over max", ring(wrapperspb.UInt64(4096), wrapperspb.UInt64(2048)), upstream.ClusterSpec{},
			[]string{"ring_hash_lb_config.minimum_ring_size 4096 is larger than maximum_ring_size 2048"}},
		{"ring max over 8M", ring(nil, wrapperspb.UInt64(1<<24)), upstream.ClusterSpec{},
			[]string{"ring_hash_lb_config.maximum_ring_size 16777216", "at most 8388608"}},
		{"maglev defaults", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_MAGLEV },
			upstream.ClusterSpec{LB: upstream.Maglev, Hash: upstream.HashConfig{TableSize: 65537}}, nil},
		{"maglev prime size", maglev(wrapperspb.UInt64(251)),
			upstream.ClusterSpec{LB: upstream.Maglev, Hash: upstream.HashConfig{TableSize: 251}}, nil},
		{"maglev size not prime", maglev(wrapperspb.UInt64(65536)), upstream.ClusterSpec{},
			[]string{"lb_policy MAGLEV", "maglev_lb_config.table_size 65536: must be a prime number"}},
		{"maglev config on ring cluster", func(c *clusterv3.Cluster) {
			maglev(nil)(c)
			c.LbPolicy = clusterv3.Cluster_RING_HASH
		}, upstream.ClusterSpec{}, []string{"maglev_lb_config: set on a RING_HASH cluster"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := xdstest.EDSCluster(cRev)
			tc.mutate(c)
			cc, err := compileCluster(c)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cc.spec.LB != tc.want.LB || cc.spec.Hash != tc.want.Hash || cc.lbWarning != "" {
				t.Errorf("LB %s %+v (warning %q), want %s %+v", cc.spec.LB, cc.spec.Hash, cc.lbWarning, tc.want.LB, tc.want.Hash)
			}
		})
	}
}
