package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Handle answers one query (a DNS message as received, without TCP's
// length prefix). It returns nil when the message must be dropped: too
// short to have a header, or not a query. A query it cannot parse gets
// FORMERR; a name in the table is answered from it; anything else is
// forwarded to the upstreams and their answer returned unchanged, or
// SERVFAIL when none answers.
func (s *Server) Handle(ctx context.Context, query []byte, tcp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return errorReply(h, nil, dnsmessage.RCodeFormatError)
	}
	if _, err := p.Question(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		return errorReply(h, nil, dnsmessage.RCodeFormatError)
	}
	if h.OpCode == 0 && q.Class == dnsmessage.ClassINET {
		if addrs, ok := s.Lookup(q.Name.String()); ok {
			limit := 65535
			if !tcp {
				limit = udpLimit(&p)
			}
			return s.answer(h, q, addrs, limit)
		}
	}
	resp, err := s.forward(ctx, query, h.ID, tcp)
	if err != nil {
		s.log.Debug("DNS proxy: forward failed", "name", q.Name.String(), "type", q.Type, "err", err)
		return errorReply(h, &q, dnsmessage.RCodeServerFailure)
	}
	return resp
}

// udpLimit is the largest UDP answer the client takes: its EDNS buffer
// size, or 512 bytes.
func udpLimit(p *dnsmessage.Parser) int {
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return udpMinSize
	}
	for {
		h, err := p.AdditionalHeader()
		if err != nil {
			return udpMinSize
		}
		if h.Type == dnsmessage.TypeOPT {
			return max(udpMinSize, int(h.Class))
		}
		if p.SkipAdditional() != nil {
			return udpMinSize
		}
	}
}

// answer builds the authoritative answer for a name in the table: its
// addresses of the queried family, or no records (NODATA) for a family it
// has none of and for other types.
func (s *Server) answer(qh dnsmessage.Header, q dnsmessage.Question, addrs []netip.Addr, limit int) []byte {
	h := dnsmessage.Header{
		ID: qh.ID, Response: true, Authoritative: true,
		RecursionDesired: qh.RecursionDesired, RecursionAvailable: true,
	}
	build := func(h dnsmessage.Header, withAnswers bool) ([]byte, error) {
		b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
		b.EnableCompression()
		if err := b.StartQuestions(); err != nil {
			return nil, err
		}
		if err := b.Question(q); err != nil {
			return nil, err
		}
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: s.o.TTL}
		for _, a := range addrs {
			if !withAnswers {
				break
			}
			var err error
			switch {
			case q.Type == dnsmessage.TypeA && a.Is4():
				err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			case q.Type == dnsmessage.TypeAAAA && a.Is6():
				err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
			if err != nil {
				return nil, err
			}
		}
		return b.Finish()
	}
	msg, err := build(h, true)
	if err == nil && len(msg) <= limit {
		return msg
	}
	// Too big for UDP: say so, and the client asks again over TCP.
	h.Truncated = true
	if msg, err = build(h, false); err != nil {
		return errorReply(qh, &q, dnsmessage.RCodeServerFailure)
	}
	return msg
}

// errorReply is an answer with rcode and, when known, the question.
func errorReply(qh dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: qh.ID, Response: true, OpCode: qh.OpCode, RCode: rcode,
		RecursionDesired: qh.RecursionDesired, RecursionAvailable: true,
	})
	if q != nil {
		if b.StartQuestions() == nil && b.Question(*q) == nil {
			if msg, err := b.Finish(); err == nil {
				return msg
			}
		}
		b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: qh.ID, Response: true, OpCode: qh.OpCode, RCode: rcode})
	}
	msg, _ := b.Finish() // a bare header always fits
	return msg
}

// forward sends the query to each upstream in turn until one answers.
func (s *Server) forward(ctx context.Context, query []byte, id uint16, tcp bool) ([]byte, error) {
	if len(s.upstreams) == 0 {
		return nil, errors.New("no upstream resolvers")
	}
	var errs []error
	for _, u := range s.upstreams {
		resp, err := s.exchange(ctx, u, query, id, tcp)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (s *Server) exchange(ctx context.Context, upstream string, query []byte, id uint16, tcp bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", upstream, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if tcp {
		if err := writeTCP(c, query); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", upstream, err)
		}
		resp, err := readTCP(bufio.NewReader(c))
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", upstream, err)
		}
		return resp, nil
	}
	if _, err := c.Write(query); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", upstream, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", upstream, err)
		}
		// Ignore stray datagrams that do not answer this query.
		if n >= 12 && uint16(buf[0])<<8|uint16(buf[1]) == id {
			return buf[:n:n], nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("upstream %s: no matching answer", upstream)
		}
	}
}
