package router

import (
	"bytes"
	"fmt"
	"hash/maphash"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// Encoded is a RouteConfiguration as it came on the wire, split into its
// virtual hosts' encodings and the rest, which is decoded. A mesh's
// outbound route configuration holds a virtual host per service, and a
// change to one service changes one of them: Compile decodes and compiles
// only the virtual hosts that changed.
type Encoded struct {
	// Config holds every field but virtual_hosts.
	Config *routev3.RouteConfiguration
	rest   []byte   // the encoding of Config
	vhosts [][]byte // each virtual host's encoding, within the resource's
}

// encoding is what a Table compiled from an Encoded keeps of it.
type encoding struct {
	rest  []byte
	parts []encodedHost
}

// encodedHost is one compiled virtual host and its encoding.
type encodedHost struct {
	hash uint64
	raw  []byte
	vh   *virtualHost
}

// fieldVirtualHosts is RouteConfiguration.virtual_hosts' field number.
const fieldVirtualHosts = 2

var hostSeed = maphash.MakeSeed()

// Split splits b, a RouteConfiguration's encoding, and decodes all of it
// but its virtual hosts. The virtual hosts' encodings are sub-slices of b,
// which must not change while the Encoded or a Table compiled from it is
// in use.
func Split(b []byte) (*Encoded, error) {
	e := &Encoded{Config: &routev3.RouteConfiguration{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if num == fieldVirtualHosts && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			e.vhosts = append(e.vhosts, v)
		} else {
			e.rest = append(e.rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if err := proto.Unmarshal(e.rest, e.Config); err != nil {
		return nil, err
	}
	return e, nil
}

// Compile compiles the route configuration, as the package's Compile
// does. A virtual host whose encoding is one prev (a Table compiled from
// an earlier Encoded of the same configuration, or nil) was compiled
// from, with the rest of the configuration unchanged too, is taken from
// prev: compiled forms are immutable, so the two tables share it.
func (e *Encoded) Compile(prev *Table) (*Table, error) {
	t, err := e.compile(prev)
	if err != nil {
		return nil, fmt.Errorf("route config %s: %w", e.Config.GetName(), err)
	}
	return t, nil
}

func (e *Encoded) compile(prev *Table) (*Table, error) {
	domains := 2 * len(e.vhosts)
	if prev != nil {
		domains = max(domains, len(prev.exact))
	}
	b, err := newTableBuilder(e.Config, domains)
	if err != nil {
		return nil, err
	}
	var old map[uint64]*encodedHost
	if prev != nil && prev.enc != nil && bytes.Equal(prev.enc.rest, e.rest) {
		old = make(map[uint64]*encodedHost, len(prev.enc.parts))
		for i := range prev.enc.parts {
			p := &prev.enc.parts[i]
			old[p.hash] = p
		}
	}
	parts := make([]encodedHost, len(e.vhosts))
	for i, raw := range e.vhosts {
		h := maphash.Bytes(hostSeed, raw)
		if p := old[h]; p != nil && bytes.Equal(p.raw, raw) {
			if err := b.add(p.vh); err != nil {
				return nil, fmt.Errorf("virtual host %q: %w", p.vh.name, err)
			}
			parts[i] = encodedHost{hash: h, raw: raw, vh: p.vh}
			continue
		}
		pb := &routev3.VirtualHost{}
		if err := proto.Unmarshal(raw, pb); err != nil {
			return nil, fmt.Errorf("virtual host %d: %w", i, err)
		}
		vh, err := b.compile(i, pb)
		if err != nil {
			return nil, err
		}
		parts[i] = encodedHost{hash: h, raw: raw, vh: vh}
	}
	t := b.table(e.Config)
	t.enc = &encoding{rest: e.rest, parts: parts}
	return t, nil
}
