package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/weftmesh/weft/internal/proxy/dns"
	"github.com/weftmesh/weft/internal/proxy/model"
)

// dnsSocket is the DNS filter's UDP listener (and, as weft-proxy adds, TCP
// on the same address), served by the dns package.
type dnsSocket struct {
	name      string
	addr      string
	upstreams []string
	srv       *dns.Server
	cancel    context.CancelFunc
	done      chan struct{}
}

// syncDNS starts, updates or stops the DNS server for want (the model's UDP
// DNS listener, or nil); m.mu is held. A new table is swapped in atomically:
// queries in flight finish with the old one.
func (m *Manager) syncDNS(want *model.Listener) {
	if d := m.dns; d != nil && (want == nil || want.Address != d.addr || !slices.Equal(want.DNS.Upstreams, d.upstreams)) {
		m.dns = nil
		m.log.Info("closing listener", "listener", d.name, "address", d.addr)
		m.drains.Add(1)
		go func() {
			defer m.drains.Done()
			d.cancel()
			<-d.done
		}()
	}
	if want == nil {
		return
	}
	if m.dns == nil {
		d, err := m.startDNS(want)
		if err != nil {
			m.failed[want.Name] = fmt.Sprintf("listener %s on %s: %v", want.Name, want.Address, err)
			return
		}
		m.dns = d
		m.log.Info("listening", "listener", want.Name, "address", want.Address, "protocols", "udp+tcp (DNS)")
	}
	m.dns.name = want.Name
	m.dns.srv.SetTable(dns.Table(want.DNS.Domains))
}

func (m *Manager) startDNS(l *model.Listener) (*dnsSocket, error) {
	srv, err := dns.New(dns.Options{Addr: l.Address, Namespace: m.opts.Namespace, Upstreams: l.DNS.Upstreams, Logger: m.log})
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", l.Address)
	if err != nil {
		return nil, unwrapOp(err)
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		pc.Close()
		return nil, unwrapOp(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &dnsSocket{name: l.Name, addr: l.Address, upstreams: slices.Clone(l.DNS.Upstreams), srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := srv.Serve(ctx, pc, ln); err != nil {
			m.log.Error("DNS listener stopped", "address", l.Address, "err", err)
		}
	}()
	return d, nil
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
