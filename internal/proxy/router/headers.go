package router

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
)

// HeaderMutations are compiled request_headers_to_add/_remove (or the
// response ones) of one or more levels of a route configuration, applied
// level after level as Envoy does: the weighted cluster's, then the
// route's, the virtual host's and the route configuration's, so that on a
// conflict the least specific level wins (most_specific_header_mutations_wins
// reverses the order of the last three). The zero value changes nothing and
// costs nothing.
//
// Values are literal: Weft does not evaluate Envoy's %COMMAND% format
// strings. Compile accepts "%%" (Envoy's escape, sent as "%") and rejects
// any other '%', which Envoy would read as a command.
type HeaderMutations struct {
	levels []headerLevel
}

// headerLevel is the mutations of one level: removals first, then the
// additions, each decided against the headers as they are after the
// removals (Envoy's HeaderParser).
type headerLevel struct {
	remove []string // canonical keys
	add    []headerOp
}

type appendAction uint8

// Envoy's HeaderValueOption.HeaderAppendAction.
const (
	appendIfExistsOrAdd appendAction = iota
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

type headerOp struct {
	// key is the canonical header name; host is set instead for
	// :authority / host, which change the request's Host.
	key  string
	host bool
	// value holds the one value, len == cap so that an append copies it;
	// it is shared by every request and never written into.
	value  []string
	action appendAction
}

// Empty reports whether there is nothing to apply.
func (m *HeaderMutations) Empty() bool { return len(m.levels) == 0 }

// Apply applies the mutations to h. host is the request's Host (:authority),
// which :authority or host mutations set; it is nil for responses, whose
// mutations never name it. Apply replaces value slices, never writes into
// them, so h may hold slices shared with other requests.
func (m *HeaderMutations) Apply(h http.Header, host *string) {
	for i := range m.levels {
		m.levels[i].apply(h, host)
	}
}

func (l *headerLevel) apply(h http.Header, host *string) {
	for _, k := range l.remove {
		delete(h, k)
	}
	// ADD_IF_ABSENT and OVERWRITE_IF_EXISTS look at the headers before any
	// option of this level is applied.
	var present uint64
	var presentMore []bool
	if len(l.add) > 64 {
		presentMore = make([]bool, len(l.add))
	}
	for i, op := range l.add {
		if op.action != addIfAbsent && op.action != overwriteIfExists {
			continue
		}
		var p bool
		if op.host {
			p = host != nil && *host != ""
		} else {
			p = len(h[op.key]) > 0
		}
		if !p {
			continue
		}
		if presentMore != nil {
			presentMore[i] = true
		} else {
			present |= 1 << i
		}
	}
	was := func(i int) bool {
		if presentMore != nil {
			return presentMore[i]
		}
		return present&(1<<i) != 0
	}
	// Overwrites first, then additions, as Envoy does.
	for i, op := range l.add {
		if op.action == overwriteIfExistsOrAdd || (op.action == overwriteIfExists && was(i)) {
			if op.host {
				*host = op.value[0]
			} else {
				h[op.key] = op.value
			}
		}
	}
	for i, op := range l.add {
		if op.action == appendIfExistsOrAdd || (op.action == addIfAbsent && !was(i)) {
			switch {
			case op.host:
				// A request has one Host: adding one replaces it.
				*host = op.value[0]
			case len(h[op.key]) == 0:
				h[op.key] = op.value
			default:
				v := h[op.key]
				h[op.key] = append(v[:len(v):len(v)], op.value[0])
			}
		}
	}
}

// forbiddenHeaders are header names no mutation may touch: hop-by-hop
// headers (the proxy removes and sets them itself) and the message framing.
var forbiddenHeaders = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"content-length": true,
}

// compileHeaderLevel compiles one level's options and removals; response
// says they apply to responses, where :authority and host are not headers
// one may set.
func compileHeaderLevel(add []*corev3.HeaderValueOption, remove []string, prefix string, response bool) (headerLevel, error) {
	var l headerLevel
	for i, name := range remove {
		field := fmt.Sprintf("%s_headers_to_remove[%d]", prefix, i)
		lower := strings.ToLower(name)
		switch {
		case !validHeaderName(name):
			return l, fmt.Errorf("%s: %q is not a valid header name", field, name)
		case lower[0] == ':' || lower == "host":
			return l, fmt.Errorf("%s: %q may not be removed (pseudo-headers and host cannot be modified)", field, name)
		}
		l.remove = append(l.remove, http.CanonicalHeaderKey(name))
	}
	for i, o := range add {
		field := fmt.Sprintf("%s_headers_to_add[%d]", prefix, i)
		op, keep, err := compileHeaderOption(o, response)
		if err != nil {
			return l, fmt.Errorf("%s: %w", field, err)
		}
		if keep {
			l.add = append(l.add, op)
		}
	}
	return l, nil
}

// compileHeaderOption compiles one HeaderValueOption; keep is false for an
// empty value that Envoy would skip (keep_empty_value unset).
func compileHeaderOption(o *corev3.HeaderValueOption, response bool) (op headerOp, keep bool, err error) {
	hv := o.GetHeader()
	if hv == nil {
		return op, false, errors.New("header is required")
	}
	name := hv.GetKey()
	lower := strings.ToLower(name)
	switch {
	case !validHeaderName(name):
		return op, false, fmt.Errorf("header.key %q is not a valid header name", name)
	case !response && (lower == ":authority" || lower == "host"):
		op.host = true
	case lower[0] == ':':
		return op, false, fmt.Errorf("header.key %q: pseudo-headers cannot be modified", name)
	case lower == "host":
		return op, false, fmt.Errorf("header.key %q cannot be set on a response", name)
	case forbiddenHeaders[lower]:
		return op, false, fmt.Errorf("header.key %q: hop-by-hop and framing headers cannot be modified", name)
	default:
		op.key = http.CanonicalHeaderKey(name)
	}
	value := hv.GetValue()
	if len(hv.GetRawValue()) > 0 {
		if value != "" {
			return op, false, errors.New("header: only one of value and raw_value may be set")
		}
		value = string(hv.GetRawValue())
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return op, false, fmt.Errorf("header.value %q: CR, LF and NUL are not allowed in a header value", value)
	}
	if value, err = literalValue(value); err != nil {
		return op, false, fmt.Errorf("header.value %q: %w", hv.GetValue(), err)
	}
	if value == "" && !o.GetKeepEmptyValue() {
		return op, false, nil
	}
	op.value = []string{value}
	if ap := o.GetAppend(); ap != nil {
		if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			return op, false, errors.New("append and append_action are both set; use append_action only")
		}
		op.action = overwriteIfExistsOrAdd
		if ap.GetValue() {
			op.action = appendIfExistsOrAdd
		}
		return op, true, nil
	}
	switch a := o.GetAppendAction(); a {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		op.action = appendIfExistsOrAdd
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		op.action = addIfAbsent
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		op.action = overwriteIfExistsOrAdd
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		op.action = overwriteIfExists
	default:
		return op, false, fmt.Errorf("append_action %s is not supported", a)
	}
	return op, true, nil
}

// literalValue turns an Envoy header value format string into the literal
// it stands for when it has no command: "%%" is a '%'. Any other '%' starts
// a command (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%, ...), which weft-proxy
// does not evaluate.
func literalValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", errors.New("format commands (%NAME%) are not supported by weft-proxy, which sends header values literally; write %% for a literal %")
	}
	return b.String(), nil
}

// validHeaderName reports whether name is an HTTP field name (a token),
// optionally with a leading ':' for a pseudo-header.
func validHeaderName(name string) bool {
	name = strings.TrimPrefix(name, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// headerSources are the header mutation fields of one level.
type headerSources struct {
	reqAdd, respAdd       []*corev3.HeaderValueOption
	reqRemove, respRemove []string
}

// compiledLevels is one level's request and response mutations.
type compiledLevels struct {
	req, resp headerLevel
}

func compileLevels(s headerSources) (compiledLevels, error) {
	var c compiledLevels
	var err error
	if c.req, err = compileHeaderLevel(s.reqAdd, s.reqRemove, "request", false); err != nil {
		return c, err
	}
	if c.resp, err = compileHeaderLevel(s.respAdd, s.respRemove, "response", true); err != nil {
		return c, err
	}
	return c, nil
}

// mutations joins levels, in the order given, into HeaderMutations, leaving
// out empty ones (nil when all are).
func mutations(levels ...headerLevel) HeaderMutations {
	var m HeaderMutations
	for _, l := range levels {
		if len(l.remove) > 0 || len(l.add) > 0 {
			m.levels = append(m.levels, l)
		}
	}
	return m
}
