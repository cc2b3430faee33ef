package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func vs(ns, name string, hosts ...string) *config.Resource {
	return &config.Resource{
		APIVersion: "networking.istio.io/v1",
		Kind:       config.KindVirtualService,
		Meta:       config.Meta{Namespace: ns, Name: name},
		Spec: &networking.VirtualService{
			Hosts: hosts,
			Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: hosts[0]}}}}},
		},
	}
}

func dr(ns, name, host string) *config.Resource {
	return &config.Resource{
		Kind: config.KindDestinationRule,
		Meta: config.Meta{Namespace: ns, Name: name},
		Spec: &networking.DestinationRule{Host: host},
	}
}

func actions(results []Result) []string {
	var out []string
	for _, r := range results {
		out = append(out, r.Key.String()+" "+r.Action)
	}
	return out
}

func TestApplyActionsRevisionsAndGenerations(t *testing.T) {
	s := openStore(t, t.TempDir())
	if s.Revision() != 0 {
		t.Fatalf("new store at revision %d", s.Revision())
	}
	before := time.Now().Add(-time.Second)

	steps := []struct {
		name    string
		apply   []*config.Resource
		wantRev int64
		want    []string
	}{
		{"create", []*config.Resource{vs("default", "reviews", "reviews"), dr("default", "reviews", "reviews")}, 1,
			[]string{"VirtualService default/reviews created", "DestinationRule default/reviews created"}},
		{"same again", []*config.Resource{vs("default", "reviews", "reviews"), dr("default", "reviews", "reviews")}, 1,
			[]string{"VirtualService default/reviews unchanged", "DestinationRule default/reviews unchanged"}},
		{"change one spec", []*config.Resource{vs("default", "reviews", "reviews", "reviews.example.com"), dr("default", "reviews", "reviews")}, 2,
			[]string{"VirtualService default/reviews configured", "DestinationRule default/reviews unchanged"}},
		{"label only", []*config.Resource{func() *config.Resource {
			r := dr("default", "reviews", "reviews")
			r.Labels = map[string]string{"team": "a"}
			return r
		}()}, 3, []string{"DestinationRule default/reviews configured"}},
	}
	for _, st := range steps {
		rev, results, err := s.Apply(st.apply)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rev != st.wantRev || s.Revision() != st.wantRev {
			t.Errorf("%s: revision %d (Revision() %d), want %d", st.name, rev, s.Revision(), st.wantRev)
		}
		if got := actions(results); !slices.Equal(got, st.want) {
			t.Errorf("%s: results %q, want %q", st.name, got, st.want)
		}
	}

	v, err := s.Get(config.Key{Kind: config.KindVirtualService, Namespace: "default", Name: "reviews"})
	if err != nil {
		t.Fatal(err)
	}
	if v.ResourceVersion != 2 || v.Generation != 2 {
		t.Errorf("VirtualService rv=%d gen=%d, want 2 and 2", v.ResourceVersion, v.Generation)
	}
	if got := v.Spec.(*networking.VirtualService).Hosts; !slices.Equal(got, []string{"reviews", "reviews.example.com"}) {
		t.Errorf("stored hosts %v", got)
	}
	if v.CreationTimestamp.Before(before) || v.CreationTimestamp.After(time.Now()) {
		t.Errorf("CreationTimestamp %v not set at create", v.CreationTimestamp)
	}
	d, err := s.Get(config.Key{Kind: config.KindDestinationRule, Namespace: "default", Name: "reviews"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ResourceVersion != 3 || d.Generation != 1 || d.Labels["team"] != "a" {
		t.Errorf("DestinationRule rv=%d gen=%d labels=%v, want 3, 1 (labels are not spec), team=a", d.ResourceVersion, d.Generation, d.Labels)
	}
	if !d.CreationTimestamp.Equal(v.CreationTimestamp) {
		t.Errorf("CreationTimestamp changed on update: %v vs %v", d.CreationTimestamp, v.CreationTimestamp)
	}
}

func TestApplyDoesNotModifyInput(t *testing.T) {
	s := openStore(t, t.TempDir())
	r := vs("default", "a", "a")
	if _, _, err := s.Apply([]*config.Resource{r}); err != nil {
		t.Fatal(err)
	}
	if r.ResourceVersion != 0 || r.Generation != 0 {
		t.Errorf("Apply changed its input: %+v", r.Meta)
	}
}

func TestApplyRejectsIncompleteResourceAtomically(t *testing.T) {
	s := openStore(t, t.TempDir())
	bad := vs("default", "", "x")
	_, _, err := s.Apply([]*config.Resource{vs("default", "good", "good"), bad})
	if err == nil {
		t.Fatal("resource without a name accepted")
	}
	if rs, _ := s.List("", ""); len(rs) != 0 || s.Revision() != 0 {
		t.Errorf("failed apply stored %d resources, revision %d", len(rs), s.Revision())
	}
}

func TestGetNotFound(t *testing.T) {
	s := openStore(t, t.TempDir())
	_, err := s.Get(config.Key{Kind: config.KindGateway, Namespace: "default", Name: "gw"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if err.Error() != "Gateway default/gw not found" {
		t.Errorf("message %q", err)
	}
}

func TestDelete(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, _, err := s.Apply([]*config.Resource{vs("default", "a", "a"), vs("default", "b", "b")}); err != nil {
		t.Fatal(err)
	}
	a := config.Key{Kind: config.KindVirtualService, Namespace: "default", Name: "a"}
	foo := config.Key{Kind: config.KindVirtualService, Namespace: "default", Name: "foo"}

	// A missing key fails the whole delete and is named.
	rev, _, err := s.Delete([]config.Key{a, foo})
	if err == nil || !errors.Is(err, ErrNotFound) || err.Error() != "VirtualService default/foo not found" {
		t.Fatalf("err = %v", err)
	}
	if rev != 1 {
		t.Errorf("failed delete returned revision %d, want 1", rev)
	}
	if _, err := s.Get(a); err != nil {
		t.Errorf("failed delete removed %s: %v", a, err)
	}

	rev, results, err := s.Delete([]config.Key{a})
	if err != nil {
		t.Fatal(err)
	}
	if rev != 2 || !slices.Equal(actions(results), []string{"VirtualService default/a deleted"}) {
		t.Errorf("rev %d results %q", rev, actions(results))
	}
	if _, err := s.Get(a); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted resource still there: %v", err)
	}
	// Re-creating starts a new life: generation 1 again.
	s.Apply([]*config.Resource{vs("default", "a", "a")})
	got, _ := s.Get(a)
	if got.Generation != 1 || got.ResourceVersion != 3 {
		t.Errorf("re-created: gen %d rv %d", got.Generation, got.ResourceVersion)
	}
}

func TestListAndAll(t *testing.T) {
	s := openStore(t, t.TempDir())
	_, _, err := s.Apply([]*config.Resource{
		vs("prod", "z", "z"), vs("default", "b", "b"), dr("prod", "a", "a"), vs("default", "a", "a"), dr("default", "c", "c"),
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(rs []*config.Resource) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Key().String())
		}
		return out
	}
	tests := []struct {
		kind config.Kind
		ns   string
		want []string
	}{
		{"", "", []string{"DestinationRule default/c", "DestinationRule prod/a", "VirtualService default/a", "VirtualService default/b", "VirtualService prod/z"}},
		{config.KindVirtualService, "", []string{"VirtualService default/a", "VirtualService default/b", "VirtualService prod/z"}},
		{"", "prod", []string{"DestinationRule prod/a", "VirtualService prod/z"}},
		{config.KindDestinationRule, "default", []string{"DestinationRule default/c"}},
		{config.KindGateway, "", nil},
	}
	for _, tt := range tests {
		rs, err := s.List(tt.kind, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(rs); !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %q) = %q, want %q", tt.kind, tt.ns, got, tt.want)
		}
	}
	rev, all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if rev != 1 || len(all) != 5 {
		t.Errorf("All = rev %d, %d resources", rev, len(all))
	}
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := vs("prod", "reviews", "reviews")
	want.Labels = map[string]string{"app": "reviews"}
	s.Apply([]*config.Resource{want})
	s.Apply([]*config.Resource{dr("prod", "reviews", "reviews")})
	created, _ := s.Get(want.Key())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, dir)
	if s2.Revision() != 2 {
		t.Errorf("revision after reopen = %d, want 2", s2.Revision())
	}
	got, err := s2.Get(want.Key())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Spec, want.Spec) || got.Labels["app"] != "reviews" || got.ResourceVersion != 1 ||
		got.Generation != 1 || !got.CreationTimestamp.Equal(created.CreationTimestamp) || got.APIVersion != want.APIVersion {
		t.Errorf("after reopen got %+v", got)
	}
	// The revision keeps counting from where it was.
	rev, _, err := s2.Apply([]*config.Resource{vs("prod", "new", "new")})
	if err != nil || rev != 3 {
		t.Errorf("apply after reopen: rev %d, %v", rev, err)
	}
}

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir)
	start := time.Now()
	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("second Open took %v", time.Since(start))
	}
}

func TestSubscribe(t *testing.T) {
	s := openStore(t, t.TempDir())
	ch, cancel := s.Subscribe()
	defer cancel()

	select {
	case rev := <-ch:
		t.Fatalf("notification %d before any change", rev)
	default:
	}
	// A slow reader: several writes, one buffered value, the latest.
	for i := range 3 {
		if _, _, err := s.Apply([]*config.Resource{vs("default", fmt.Sprint("r", i), "a")}); err != nil {
			t.Fatal(err)
		}
	}
	if rev := <-ch; rev != 3 {
		t.Errorf("got revision %d, want the latest, 3", rev)
	}
	// An unchanged apply does not notify.
	s.Apply([]*config.Resource{vs("default", "r0", "a")})
	select {
	case rev := <-ch:
		t.Errorf("notified of revision %d for an unchanged apply", rev)
	default:
	}
	s.Delete([]config.Key{{Kind: config.KindVirtualService, Namespace: "default", Name: "r0"}})
	if rev := <-ch; rev != 4 {
		t.Errorf("after delete got %d, want 4", rev)
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel still open after cancel")
	}
	cancel() // idempotent
}

func TestSubscribeConcurrentWriters(t *testing.T) {
	s := openStore(t, t.TempDir())
	ch, cancel := s.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				if _, _, err := s.Apply([]*config.Resource{vs("default", fmt.Sprintf("w%d-%d", w, i), "a")}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	// Read concurrently; revisions seen must increase.
	done := make(chan struct{})
	var seen []int64
	go func() {
		defer close(done)
		for rev := range ch {
			seen = append(seen, rev)
			if rev == 20 {
				return
			}
		}
	}()
	wg.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("never saw revision 20")
	}
	if !slices.IsSorted(seen) || s.Revision() != 20 {
		t.Errorf("revisions seen out of order or wrong final: %v, Revision %d", seen, s.Revision())
	}
}

func TestCloseClosesSubscriptions(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := s.Subscribe()
	s.Close()
	if _, ok := <-ch; ok {
		t.Error("subscription open after Close")
	}
	cancel()
}

// TestAllDecodesOnlyWhatChanged checks that All hands out the resources it
// decoded before, unchanged, and decodes again only what was written since:
// the control plane reads every resource for every push.
func TestAllDecodesOnlyWhatChanged(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, _, err := s.Apply([]*config.Resource{vs("default", "a", "a"), vs("default", "b", "b"), dr("default", "c", "c")}); err != nil {
		t.Fatal(err)
	}
	byKey := func() map[string]*config.Resource {
		t.Helper()
		_, rs, err := s.All()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*config.Resource{}
		for _, r := range rs {
			out[r.Key().String()] = r
		}
		return out
	}
	first := byKey()
	second := byKey()
	for k, r := range first {
		if second[k] != r {
			t.Errorf("%s was decoded again without a change", k)
		}
	}
	if _, _, err := s.Apply([]*config.Resource{vs("default", "b", "b", "b2")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Delete([]config.Key{dr("default", "c", "c").Key()}); err != nil {
		t.Fatal(err)
	}
	third := byKey()
	if len(third) != 2 || len(s.decoded) != 2 {
		t.Fatalf("after a delete: %d resources, %d kept decoded; want 2 and 2", len(third), len(s.decoded))
	}
	if third["VirtualService default/a"] != first["VirtualService default/a"] {
		t.Error("an unchanged resource was decoded again after another one changed")
	}
	b := third["VirtualService default/b"]
	if b == first["VirtualService default/b"] || !slices.Equal(b.Spec.(*networking.VirtualService).Hosts, []string{"b", "b2"}) || b.Generation != 2 {
		t.Errorf("the changed resource: %+v, want the new hosts at generation 2", b)
	}
}
