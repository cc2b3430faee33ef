package registry

import (
	"testing"
)

func TestVIPsAreStable(t *testing.T) {
	v, err := NewVIPs("240.240.0.0/16", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &Service{Hostname: "a.default.svc.cluster.local"}
	b := &Service{Hostname: "b.default.svc.cluster.local"}
	se := &Service{Hostname: "api.example.com", VIP: "10.9.9.9"}
	if err := v.Assign([]*Service{b, se, a}); err != nil {
		t.Fatal(err)
	}
	if a.VIP != "240.240.0.1" || b.VIP != "240.240.0.2" {
		t.Errorf("VIPs a=%s b=%s, want .1 and .2 in host order", a.VIP, b.VIP)
	}
	if se.VIP != "10.9.9.9" {
		t.Errorf("a ServiceEntry's own address was replaced: %s", se.VIP)
	}

	// a goes away and comes back; c is new: nobody's VIP moves.
	c := &Service{Hostname: "c.default.svc.cluster.local"}
	b2 := &Service{Hostname: b.Hostname}
	v.Assign([]*Service{b2, c})
	a2 := &Service{Hostname: a.Hostname}
	v.Assign([]*Service{a2, b2, c})
	if a2.VIP != a.VIP || b2.VIP != b.VIP || c.VIP != "240.240.0.3" {
		t.Errorf("after churn a=%s b=%s c=%s", a2.VIP, b2.VIP, c.VIP)
	}

	// A restart with the saved assignments keeps them.
	saved, changed := v.Save()
	if !changed || len(saved) != 3 {
		t.Fatalf("Save = %v, %v", saved, changed)
	}
	if _, changed := v.Save(); changed {
		t.Error("Save reports a change twice")
	}
	r, _ := NewVIPs("240.240.0.0/16", saved)
	d := &Service{Hostname: "d.default.svc.cluster.local"}
	c3 := &Service{Hostname: c.Hostname}
	r.Assign([]*Service{d, c3})
	if c3.VIP != c.VIP || d.VIP == a.VIP || d.VIP == b.VIP || d.VIP == c.VIP {
		t.Errorf("after restart c=%s d=%s", c3.VIP, d.VIP)
	}
}

func TestVIPRangeExhausted(t *testing.T) {
	v, err := NewVIPs("10.0.0.0/30", nil) // .1 and .2 usable
	if err != nil {
		t.Fatal(err)
	}
	svcs := []*Service{{Hostname: "a"}, {Hostname: "b"}, {Hostname: "c"}}
	if err := v.Assign(svcs); err == nil {
		t.Errorf("no error with 3 services in a /30: %s %s %s", svcs[0].VIP, svcs[1].VIP, svcs[2].VIP)
	}
	if _, err := NewVIPs("nonsense", nil); err == nil {
		t.Error("a bad range was accepted")
	}
}

func TestVIPsReclaimedOnlyWhenTheRangeIsFull(t *testing.T) {
	v, err := NewVIPs("10.0.0.0/29", nil) // .1 to .6 usable
	if err != nil {
		t.Fatal(err)
	}
	var first []*Service
	for _, h := range []string{"a", "b", "c", "d", "e", "f"} {
		first = append(first, &Service{Hostname: h})
	}
	if err := v.Assign(first); err != nil {
		t.Fatal(err)
	}
	// a to e go away; f stays, g is new. The range is full, so the gone
	// hosts' VIPs are taken back; f keeps its own.
	f, g := &Service{Hostname: "f"}, &Service{Hostname: "g"}
	if err := v.Assign([]*Service{f, g}); err != nil {
		t.Fatalf("a full range with 5 gone hosts: %v", err)
	}
	if f.VIP != first[5].VIP {
		t.Errorf("f's VIP moved from %s to %s", first[5].VIP, f.VIP)
	}
	if g.VIP == "" || g.VIP == f.VIP {
		t.Errorf("g got VIP %q (f has %s)", g.VIP, f.VIP)
	}
	if saved, changed := v.Save(); !changed || len(saved) != 2 {
		t.Errorf("Save after reclaiming = %v, %v; want f and g only", saved, changed)
	}
	// While there is room, a gone host keeps its VIP.
	h := &Service{Hostname: "h"}
	v.Assign([]*Service{h})
	f2 := &Service{Hostname: "f"}
	v.Assign([]*Service{f2, h})
	if f2.VIP != f.VIP {
		t.Errorf("f came back with %s, want its VIP %s", f2.VIP, f.VIP)
	}
}

// A host whose ServiceEntry now has an address of its own gives its
// allocated VIP back once the range is full.
func TestVIPReclaimedFromAHostWithItsOwnAddress(t *testing.T) {
	v, err := NewVIPs("10.0.0.0/29", nil) // .1 to .6 usable
	if err != nil {
		t.Fatal(err)
	}
	var svcs []*Service
	for _, h := range []string{"a", "b", "c", "d", "e", "f"} {
		svcs = append(svcs, &Service{Hostname: h})
	}
	if err := v.Assign(svcs); err != nil {
		t.Fatal(err)
	}
	aVIP := svcs[0].VIP
	// a now has its own address; g is new and the range is full.
	next := []*Service{{Hostname: "a", VIP: "192.168.7.7"}}
	for _, h := range []string{"b", "c", "d", "e", "f"} {
		next = append(next, &Service{Hostname: h})
	}
	g := &Service{Hostname: "g"}
	if err := v.Assign(append(next, g)); err != nil {
		t.Fatalf("a full range in which a no longer needs its VIP: %v", err)
	}
	if g.VIP != aVIP {
		t.Errorf("g got %s, want a's old VIP %s", g.VIP, aVIP)
	}
	if next[0].VIP != "192.168.7.7" {
		t.Errorf("a's own address became %s", next[0].VIP)
	}
	for i, s := range next[1:] {
		if s.VIP != svcs[i+1].VIP {
			t.Errorf("%s's VIP moved from %s to %s", s.Hostname, svcs[i+1].VIP, s.VIP)
		}
	}
}
