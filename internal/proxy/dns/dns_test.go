package dns

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

var (
	reviewsVIP  = netip.MustParseAddr("240.240.0.1")
	reviewsVIP6 = netip.MustParseAddr("2001:db8::1")
	ratingsVIP  = netip.MustParseAddr("240.240.0.2")
	externalIP  = netip.MustParseAddr("192.0.2.99")
)

// fakeUpstream answers A queries with 192.0.2.99, except nx.example.,
// which gets NXDOMAIN, over UDP and TCP on one 127.0.0.1 port. It counts
// the queries it saw.
type fakeUpstream struct {
	addr    string
	queries chan string
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	// The upstream needs the same port for UDP and TCP. A free UDP port may
	// be taken for TCP by another test process, so try a few.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	u := &fakeUpstream{addr: pc.LocalAddr().String(), queries: make(chan string, 100)}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(u.reply(buf[:n]), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				msg, err := readTCP(c)
				if err == nil {
					writeTCP(c, u.reply(msg))
				}
			}()
		}
	}()
	return u
}

func (u *fakeUpstream) reply(query []byte) []byte {
	var m dnsmessage.Message
	if err := m.Unpack(query); err != nil || len(m.Questions) != 1 {
		return nil
	}
	q := m.Questions[0]
	u.queries <- q.Name.String()
	m.Header.Response = true
	if q.Name.String() == "nx.example." {
		m.Header.RCode = dnsmessage.RCodeNameError
	} else if q.Type == dnsmessage.TypeA {
		m.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: externalIP.As4()},
		}}
	}
	out, _ := m.Pack()
	return out
}

func newServer(t *testing.T, upstreams ...string) *Server {
	t.Helper()
	s, err := New(Options{Namespace: "default", Upstreams: upstreams, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.SetTable(Table{
		"reviews.default.svc.cluster.local.": {reviewsVIP, reviewsVIP6},
		"Ratings.Other.svc.cluster.local":    {ratingsVIP},
	})
	return s
}

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0xbeef, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// result is what a client sees in an answer.
type result struct {
	rcode     dnsmessage.RCode
	addrs     []netip.Addr
	truncated bool
}

func parse(t *testing.T, resp []byte) result {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if m.Header.ID != 0xbeef || !m.Header.Response {
		t.Fatalf("answer header %+v: want ID 0xbeef and the response bit", m.Header)
	}
	r := result{rcode: m.Header.RCode, truncated: m.Header.Truncated}
	for _, a := range m.Answers {
		switch b := a.Body.(type) {
		case *dnsmessage.AResource:
			r.addrs = append(r.addrs, netip.AddrFrom4(b.A))
		case *dnsmessage.AAAAResource:
			r.addrs = append(r.addrs, netip.AddrFrom16(b.AAAA))
		}
	}
	return r
}

func TestAnswers(t *testing.T) {
	up := startUpstream(t)
	s := newServer(t, up.addr)
	a, aaaa := dnsmessage.TypeA, dnsmessage.TypeAAAA
	tests := []struct {
		name      string
		qname     string
		qtype     dnsmessage.Type
		want      result
		forwarded bool
	}{
		{"short name", "reviews.", a, result{addrs: []netip.Addr{reviewsVIP}}, false},
		{"name.namespace", "reviews.default.", a, result{addrs: []netip.Addr{reviewsVIP}}, false},
		{"name.namespace.svc", "reviews.default.svc.", a, result{addrs: []netip.Addr{reviewsVIP}}, false},
		{"fully qualified", "reviews.default.svc.cluster.local.", a, result{addrs: []netip.Addr{reviewsVIP}}, false},
		{"case does not matter", "REVIEWS.Default.", a, result{addrs: []netip.Addr{reviewsVIP}}, false},
		{"AAAA with a v6 VIP", "reviews.", aaaa, result{addrs: []netip.Addr{reviewsVIP6}}, false},
		{"AAAA without a v6 VIP is empty", "ratings.other.", aaaa, result{}, false},
		{"other types of a mesh name are empty", "reviews.", dnsmessage.TypeMX, result{}, false},
		{"another namespace by name.namespace", "ratings.other.", a, result{addrs: []netip.Addr{ratingsVIP}}, false},
		{"another namespace by FQDN", "ratings.other.svc.cluster.local.", a, result{addrs: []netip.Addr{ratingsVIP}}, false},
		{"another namespace's short name is not ours", "ratings.", a, result{addrs: []netip.Addr{externalIP}}, true},
		{"unknown name is forwarded", "example.com.", a, result{addrs: []netip.Addr{externalIP}}, true},
		{"unknown cluster name is forwarded", "nope.default.svc.cluster.local.", a, result{addrs: []netip.Addr{externalIP}}, true},
		{"NXDOMAIN passes through", "nx.example.", a, result{rcode: dnsmessage.RCodeNameError}, true},
	}
	for _, tt := range tests {
		for _, tcp := range []bool{false, true} {
			name := tt.name + map[bool]string{false: "/udp", true: "/tcp"}[tcp]
			t.Run(name, func(t *testing.T) {
				got := parse(t, s.Handle(context.Background(), query(t, tt.qname, tt.qtype), tcp))
				if got.rcode != tt.want.rcode || !slices.Equal(got.addrs, tt.want.addrs) {
					t.Errorf("%s %v: got %+v, want %+v", tt.qname, tt.qtype, got, tt.want)
				}
				select {
				case q := <-up.queries:
					if !tt.forwarded {
						t.Errorf("%s was forwarded upstream", q)
					} else if q != tt.qname {
						t.Errorf("upstream saw %s, want %s", q, tt.qname)
					}
				default:
					if tt.forwarded {
						t.Errorf("%s was not forwarded upstream", tt.qname)
					}
				}
			})
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	// A UDP port that nobody reads, then the working upstream.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	up := startUpstream(t)
	s := newServer(t, dead.LocalAddr().String(), up.addr)
	if got := parse(t, s.Handle(context.Background(), query(t, "example.com.", dnsmessage.TypeA), false)); !slices.Equal(got.addrs, []netip.Addr{externalIP}) {
		t.Errorf("with the first upstream dead: %+v, want the second's answer", got)
	}
	s = newServer(t, dead.LocalAddr().String())
	if got := parse(t, s.Handle(context.Background(), query(t, "example.com.", dnsmessage.TypeA), false)); got.rcode != dnsmessage.RCodeServerFailure {
		t.Errorf("with no upstream answering: %+v, want SERVFAIL", got)
	}
	s = newServer(t)
	s.upstreams = nil
	if got := parse(t, s.Handle(context.Background(), query(t, "reviews.", dnsmessage.TypeA), false)); !slices.Equal(got.addrs, []netip.Addr{reviewsVIP}) {
		t.Errorf("mesh names must resolve without upstreams: %+v", got)
	}
}

func TestMalformed(t *testing.T) {
	s := newServer(t)
	s.upstreams = nil
	good := query(t, "reviews.", dnsmessage.TypeA)
	twoQuestions := func() []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0xbeef})
		b.StartQuestions()
		for range 2 {
			b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("reviews."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		}
		m, _ := b.Finish()
		return m
	}()
	asResponse := slices.Clone(good)
	asResponse[2] |= 0x80
	tests := []struct {
		name  string
		msg   []byte
		rcode dnsmessage.RCode
		drop  bool
	}{
		{"empty", nil, 0, true},
		{"shorter than a header", good[:11], 0, true},
		{"a response, not a query", asResponse, 0, true},
		{"header only", good[:12], dnsmessage.RCodeFormatError, false},
		{"truncated question", good[:len(good)-3], dnsmessage.RCodeFormatError, false},
		{"garbage question", append(slices.Clone(good[:12]), 0xff, 0xff, 0xff), dnsmessage.RCodeFormatError, false},
		{"two questions", twoQuestions, dnsmessage.RCodeFormatError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.Handle(context.Background(), tt.msg, false)
			if tt.drop {
				if resp != nil {
					t.Fatalf("answered %x, want it dropped", resp)
				}
				return
			}
			if resp == nil {
				t.Fatal("dropped, want an answer")
			}
			if got := parse(t, resp); got.rcode != tt.rcode {
				t.Errorf("rcode %v, want %v", got.rcode, tt.rcode)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	s := newServer(t)
	var many []netip.Addr
	for i := range 60 {
		many = append(many, netip.AddrFrom4([4]byte{240, 240, 1, byte(i)}))
	}
	s.SetTable(Table{"big.default.svc.cluster.local": many})
	udp := parse(t, s.Handle(context.Background(), query(t, "big.", dnsmessage.TypeA), false))
	if !udp.truncated || len(udp.addrs) != 0 {
		t.Errorf("over UDP: truncated=%v with %d answers, want TC and none", udp.truncated, len(udp.addrs))
	}
	tcp := parse(t, s.Handle(context.Background(), query(t, "big.", dnsmessage.TypeA), true))
	if tcp.truncated || len(tcp.addrs) != len(many) {
		t.Errorf("over TCP: truncated=%v with %d answers, want all %d", tcp.truncated, len(tcp.addrs), len(many))
	}
}

// TestServe runs the server on real sockets and asks over UDP and TCP.
func TestServe(t *testing.T) {
	up := startUpstream(t)
	s := newServer(t, up.addr)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, ln) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	}()

	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, name := range []string{"reviews.", "example.com."} {
		if _, err := c.Write(query(t, name, dnsmessage.TypeA)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("udp %s: %v", name, err)
		}
		if got := parse(t, buf[:n]); len(got.addrs) != 1 {
			t.Errorf("udp %s: %+v", name, got)
		}
	}

	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(tc)
	// Two queries on one connection, answered in order.
	for _, want := range []netip.Addr{reviewsVIP, externalIP} {
		name := map[netip.Addr]string{reviewsVIP: "reviews.default.", externalIP: "example.com."}[want]
		if err := writeTCP(tc, query(t, name, dnsmessage.TypeA)); err != nil {
			t.Fatal(err)
		}
		resp, err := readTCP(r)
		if err != nil {
			t.Fatalf("tcp %s: %v", name, err)
		}
		if got := parse(t, resp); !slices.Equal(got.addrs, []netip.Addr{want}) {
			t.Errorf("tcp %s: %+v, want %v", name, got, want)
		}
	}
}

func TestReadResolvConf(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, text string
		want       []string
		wantErr    string
	}{
		{"nameservers", "# comment\nsearch corp.example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n",
			[]string{"10.0.0.2:53", "[fe80::1]:53"}, ""},
		{"none", "search corp.example\n", nil, "no nameserver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadResolvConf(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ReadResolvConf = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	s, err := New(Options{ResolvConf: filepath.Join(dir, "nameservers")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.upstreams, []string{"10.0.0.2:53", "[fe80::1]:53"}) {
		t.Errorf("New read upstreams %v", s.upstreams)
	}
}

// FuzzDNSPacket feeds arbitrary packets to the handler: it must never
// panic, and whatever it answers must be a well-formed response to the
// same query ID.
func FuzzDNSPacket(f *testing.F) {
	f.Add(query(f, "reviews.", dnsmessage.TypeA))
	f.Add(query(f, "reviews.default.svc.cluster.local.", dnsmessage.TypeAAAA))
	f.Add(query(f, "example.com.", dnsmessage.TypeTXT))
	f.Add([]byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01})
	s, err := New(Options{Upstreams: []string{}, ResolvConf: "/nonexistent"})
	if err != nil {
		f.Fatal(err)
	}
	s.SetTable(Table{"reviews.default.svc.cluster.local": {reviewsVIP, reviewsVIP6}})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, tcp := range []bool{false, true} {
			resp := s.Handle(context.Background(), pkt, tcp)
			if resp == nil {
				continue
			}
			var p dnsmessage.Parser
			h, err := p.Start(resp)
			if err != nil {
				t.Fatalf("answer to %x does not parse: %v", pkt, err)
			}
			if !h.Response || len(pkt) < 2 || h.ID != uint16(pkt[0])<<8|uint16(pkt[1]) {
				t.Fatalf("answer to %x has header %+v", pkt, h)
			}
			if !tcp && len(resp) > 65535 {
				t.Fatalf("answer of %d bytes", len(resp))
			}
		}
	})
}
