package config

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// normalizeDurations rewrites every google.protobuf.Duration in a spec
// written as a Go duration ("3m", "500ms", "1h30m") into the seconds form
// protojson reads ("180s"). Istio's own decoder accepts both, and Istio's
// documentation uses the Go form (outlierDetection.baseEjectionTime: 3m).
// Anything it does not understand is left alone for protojson to report.
func normalizeDurations(raw []byte, md protoreflect.MessageDescriptor) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return raw
	}
	if !walkDurations(v, md) {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

// walkDurations rewrites durations in v, a decoded JSON value of message md,
// and reports whether it changed anything.
func walkDurations(v any, md protoreflect.MessageDescriptor) bool {
	obj, ok := v.(map[string]any)
	if !ok {
		return false
	}
	changed := false
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil || fd.Message() == nil {
			continue
		}
		switch {
		case fd.IsMap():
			vd := fd.MapValue()
			if m, ok := val.(map[string]any); ok && vd.Message() != nil {
				for k, item := range m {
					if s, ok := convertDuration(item, vd.Message()); ok {
						m[k], changed = s, true
					} else if walkDurations(item, vd.Message()) {
						changed = true
					}
				}
			}
		case fd.IsList():
			if list, ok := val.([]any); ok {
				for i, item := range list {
					if s, ok := convertDuration(item, fd.Message()); ok {
						list[i], changed = s, true
					} else if walkDurations(item, fd.Message()) {
						changed = true
					}
				}
			}
		default:
			if s, ok := convertDuration(val, fd.Message()); ok {
				obj[key], changed = s, true
			} else if walkDurations(val, fd.Message()) {
				changed = true
			}
		}
	}
	return changed
}

// convertDuration returns v in protojson's form when md is a Duration and v
// a Go duration string protojson would not read.
func convertDuration(v any, md protoreflect.MessageDescriptor) (string, bool) {
	s, ok := v.(string)
	if !ok || md.FullName() != "google.protobuf.Duration" {
		return "", false
	}
	if strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ms") && !strings.HasSuffix(s, "us") &&
		!strings.HasSuffix(s, "ns") && !strings.HasSuffix(s, "µs") && !strings.ContainsAny(s[:len(s)-1], "hmsµun") {
		return "", false // already "1.5s"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", false
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s", true
}
