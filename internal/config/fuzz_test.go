package config

import (
	"errors"
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must never panic, must
// explain every rejection, and whatever it accepts must survive a trip
// through ToYAML (what `weft get -o yaml` prints) unchanged. The seed
// corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode("fuzz.yaml", data)
		if err != nil {
			var l ErrorList
			if !errors.As(err, &l) || len(l) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			for _, e := range l {
				if e.Message == "" {
					t.Fatalf("error without a message: %+v", e)
				}
			}
			return
		}
		for _, r := range rs {
			y, err := ToYAML(r)
			if err != nil {
				t.Fatalf("ToYAML(%s): %v", r.Key(), err)
			}
			again, err := Decode("again.yaml", y)
			if err != nil {
				t.Fatalf("decoding ToYAML output failed: %v\n%s", err, y)
			}
			if len(again) != 1 {
				t.Fatalf("ToYAML output holds %d resources:\n%s", len(again), y)
			}
			a := again[0]
			if a.Key() != r.Key() || a.APIVersion != r.APIVersion ||
				!maps.Equal(a.Labels, r.Labels) || !maps.Equal(a.Annotations, r.Annotations) {
				t.Fatalf("metadata changed: %+v %s, want %+v %s", a.Meta, a.APIVersion, r.Meta, r.APIVersion)
			}
			if !proto.Equal(a.Spec, r.Spec) {
				t.Fatalf("spec changed:\n got %v\nwant %v\n%s", a.Spec, r.Spec, y)
			}
		}
	})
}
