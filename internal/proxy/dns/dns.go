package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults.
const (
	DefaultAddr       = "127.0.0.1:15053"
	DefaultNamespace  = "default"
	DefaultDomain     = "cluster.local"
	DefaultResolvConf = "/etc/resolv.conf"
	DefaultTimeout    = 2 * time.Second
	DefaultTTL        = 30 // seconds, as Istio's DNS proxy

	maxInflight = 256              // concurrent UDP queries
	udpMinSize  = 512              // RFC 1035 limit without EDNS
	tcpIdle     = 10 * time.Second // a TCP connection with no query is closed
)

// Table maps a fully qualified service name (reviews.default.svc.cluster.local,
// with or without the trailing dot, any case) to its addresses: IPv4
// addresses answer A queries, IPv6 addresses AAAA queries.
type Table map[string][]netip.Addr

// Options configure a Server.
type Options struct {
	// Addr is where ListenAndServe listens, UDP and TCP (default
	// 127.0.0.1:15053).
	Addr string
	// Namespace is the workload's namespace, for short names (default
	// "default"); Domain the cluster's domain (default "cluster.local").
	Namespace string
	Domain    string
	// Upstreams are the resolvers (host:port) for other names. When
	// empty, the nameservers of ResolvConf (default /etc/resolv.conf).
	Upstreams  []string
	ResolvConf string
	// Timeout bounds one query to one upstream (default 2s).
	Timeout time.Duration
	// TTL of the answers from the table, in seconds (default 30).
	TTL    uint32
	Logger *slog.Logger
}

// Server is the DNS proxy.
type Server struct {
	o         Options
	search    []string // suffixes tried for a name, in order
	upstreams []string
	table     atomic.Pointer[Table]
	log       *slog.Logger
}

// New returns a server with an empty table. A missing or empty resolv.conf
// is not an error: names that are not in the table then get SERVFAIL.
func New(o Options) (*Server, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	domain := normalize(o.Domain)
	s := &Server{
		o:      o,
		search: []string{normalize(o.Namespace) + ".svc." + domain, "svc." + domain, domain},
		log:    o.Logger,
	}
	ups := o.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = ReadResolvConf(o.ResolvConf); err != nil {
			s.log.Warn("no upstream resolvers: names outside the mesh will fail", "err", err)
		}
	}
	for _, u := range ups {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return nil, fmt.Errorf("dns: upstream %q: want host:port", u)
		}
		if u == o.Addr {
			continue // never forward to ourselves
		}
		s.upstreams = append(s.upstreams, u)
	}
	empty := Table{}
	s.table.Store(&empty)
	return s, nil
}

// ReadResolvConf returns the nameservers of a resolv.conf file as host:53.
func ReadResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.WithZone(""), 53).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read resolvers %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read resolvers: no nameserver in %s", path)
	}
	return out, nil
}

func normalize(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// SetTable replaces the service table; queries in flight finish with the
// old one.
func (s *Server) SetTable(t Table) {
	n := make(Table, len(t))
	for name, addrs := range t {
		k := normalize(name)
		for _, a := range addrs {
			n[k] = append(n[k], a.Unmap())
		}
	}
	s.table.Store(&n)
}

// Lookup resolves name as the proxy does: the search path first (the name
// in the workload's namespace, then as NAME.NS.svc, then under the
// domain), then the name as it is. ok is false when the name is not the
// mesh's.
func (s *Server) Lookup(name string) (addrs []netip.Addr, ok bool) {
	n := normalize(name)
	if n == "" {
		return nil, false
	}
	t := *s.table.Load()
	for _, suffix := range s.search {
		if a, ok := t[n+"."+suffix]; ok {
			return a, true
		}
	}
	a, ok := t[n]
	return a, ok
}

// ListenAndServe serves UDP and TCP on Options.Addr until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	pc, err := net.ListenPacket("udp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("dns: listen udp %s: %w", s.o.Addr, err)
	}
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns: listen tcp %s: %w", s.o.Addr, err)
	}
	s.log.Info("DNS proxy listening", "address", s.o.Addr, "upstreams", s.upstreams)
	return s.Serve(ctx, pc, ln)
}

// Serve answers queries on pc (UDP) and ln (TCP), either of which may be
// nil, until ctx is done; it closes both.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		if pc != nil {
			pc.Close()
		}
		if ln != nil {
			ln.Close()
		}
	}()
	if pc != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.serveUDP(ctx, pc, &wg) }()
	}
	if ln != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.serveTCP(ctx, ln, &wg) }()
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) {
	sem := make(chan struct{}, maxInflight)
	for {
		buf := make([]byte, 65535)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("DNS proxy: udp read failed", "err", err)
			}
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // overloaded: drop, the client retries
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if resp := s.Handle(ctx, buf[:n], false); resp != nil {
				pc.WriteTo(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("DNS proxy: tcp accept failed", "err", err)
			}
			return
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers the length-prefixed queries of one TCP connection.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		msg, err := readTCP(r)
		if err != nil {
			return
		}
		resp := s.Handle(ctx, msg, true)
		if resp == nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(s.o.Timeout))
		if err := writeTCP(c, resp); err != nil {
			return
		}
	}
}

func readTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCP(w io.Writer, msg []byte) error {
	if len(msg) > 65535 {
		return errors.New("dns: message too long for TCP")
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	_, err := w.Write(out)
	return err
}
