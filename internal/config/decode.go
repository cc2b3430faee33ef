package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

// APIVersions lists the apiVersions Weft accepts, newest first. The v1 and
// v1beta1 types are aliases of v1alpha3, so all three decode the same way.
var APIVersions = []string{
	"networking.istio.io/v1",
	"networking.istio.io/v1beta1",
	"networking.istio.io/v1alpha3",
}

// Kinds lists the kinds Weft accepts.
var Kinds = []Kind{KindVirtualService, KindDestinationRule, KindGateway, KindServiceEntry, KindWorkloadEntry}

// DefaultNamespace is the namespace of a resource whose metadata names none.
const DefaultNamespace = "default"

// NewSpec returns an empty spec message for kind, or nil for a kind Weft
// does not know.
func NewSpec(kind Kind) proto.Message {
	switch kind {
	case KindVirtualService:
		return &networking.VirtualService{}
	case KindDestinationRule:
		return &networking.DestinationRule{}
	case KindGateway:
		return &networking.Gateway{}
	case KindServiceEntry:
		return &networking.ServiceEntry{}
	case KindWorkloadEntry:
		return &networking.WorkloadEntry{}
	}
	return nil
}

// Decode reads a multi-document YAML file (documents separated by lines of
// "---"; empty and comment-only documents are skipped) into resources, and
// validates each one. file is used only in error messages.
//
// It reports every problem it finds, not just the first, as an ErrorList.
// When the error is not nil, the returned slice holds only the documents
// that decoded and validated cleanly; a caller that stores resources must
// store none of them.
func Decode(file string, data []byte) ([]*Resource, error) {
	var out []*Resource
	var errs ErrorList
	idx := 0
	for _, doc := range splitDocuments(data) {
		js, err := yaml.YAMLToJSONStrict(doc.data)
		if err != nil {
			errs = append(errs, &Error{File: file, Index: idx, Message: yamlError(err, doc.line)})
			idx++
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		r, derrs := decodeObject(js, false)
		if r != nil {
			// Validate the spec even when the metadata is wrong, but do
			// not report a field twice.
			for _, e := range Validate(r) {
				if !slices.ContainsFunc(derrs, func(d *Error) bool { return d.Path == e.Path }) {
					derrs = append(derrs, e)
				}
			}
		}
		for _, e := range derrs {
			e.File, e.Index = file, idx
		}
		if len(derrs) == 0 {
			out = append(out, r)
		}
		errs = append(errs, derrs...)
		idx++
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// UnmarshalResource decodes one resource in the JSON shape MarshalJSON
// writes, including the server-set metadata (resourceVersion, generation,
// creationTimestamp). It does not validate the spec. On failure the error is
// an ErrorList.
func UnmarshalResource(data []byte) (*Resource, error) {
	r, errs := decodeObject(data, true)
	if r == nil || len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

type document struct {
	data []byte
	line int // 1-based line of the document's first line in the file
}

// splitDocuments splits a YAML stream at lines that are exactly "---"
// (optionally followed by spaces or a comment), the way kubectl does.
func splitDocuments(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	start, startLine, line := 0, 1, 1
	for off := 0; off <= len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := off + end + 1
		if end < 0 {
			end = len(data) - off
			next = len(data) + 1
		}
		text := strings.TrimRight(string(data[off:off+end]), " \t\r")
		if rest, ok := strings.CutPrefix(text, "---"); ok && (rest == "" || strings.HasPrefix(strings.TrimSpace(rest), "#")) {
			docs = append(docs, document{data: data[start:off], line: startLine})
			start, startLine = min(next, len(data)), line+1
		}
		off = next
		line++
	}
	docs = append(docs, document{data: data[start:], line: startLine})
	return docs
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlError rewrites a YAML parser error so that line numbers count from
// the start of the file rather than the start of the document.
func yamlError(err error, firstLine int) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = yamlLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return fmt.Sprintf("line %d", n+firstLine-1)
	})
	msg = strings.Join(strings.Fields(msg), " ")
	if !yamlLineRE.MatchString(msg) {
		msg += fmt.Sprintf(" (in the document starting at line %d)", firstLine)
	}
	return "invalid YAML: " + msg
}

var topLevelKeys = []string{"apiVersion", "kind", "metadata", "spec", "status"}

// decodeObject decodes one resource from JSON. With stored set it also
// reads the server-set metadata; otherwise those keys are ignored, as are
// other ObjectMeta keys such as uid. It returns a nil resource when the
// spec could not be decoded, and the resource with errors when only other
// parts of the document are wrong, so that the spec can still be
// validated.
func decodeObject(js []byte, stored bool) (*Resource, ErrorList) {
	var errs ErrorList
	r := &Resource{}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil || top == nil {
		errs.errorf(nil, "", "document must be a mapping with apiVersion, kind, metadata and spec")
		return nil, errs
	}
	var unknown []string
	for k := range top {
		if !slices.Contains(topLevelKeys, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)

	kind, kindOK := stringField(top, "kind", &errs)
	apiVersion, avOK := stringField(top, "apiVersion", &errs)
	r.Kind, r.APIVersion = Kind(kind), apiVersion
	decodeMeta(r, top["metadata"], stored, &errs)
	// Name the resource in the errors found so far.
	for _, e := range errs {
		e.Kind, e.Namespace, e.Name = r.Kind, r.Namespace, r.Name
	}
	if avOK && !slices.Contains(APIVersions, apiVersion) {
		errs.errorf(r, "apiVersion", "unsupported apiVersion %q; supported: %s", apiVersion, strings.Join(APIVersions, ", "))
		avOK = false
	}
	spec := NewSpec(r.Kind)
	if kindOK && spec == nil {
		names := make([]string, len(Kinds))
		for i, k := range Kinds {
			names[i] = string(k)
		}
		errs.errorf(r, "kind", "unsupported kind %q; supported: %s", kind, strings.Join(names, ", "))
		kindOK = false
	}
	for _, k := range unknown {
		errs.errorf(r, field("", k), "unknown field %q (a resource has only %s)", k, strings.Join(topLevelKeys, ", "))
	}
	if !kindOK || !avOK {
		return nil, errs
	}
	if raw, ok := top["spec"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		raw = normalizeDurations(raw, spec.ProtoReflect().Descriptor())
		if err := protojson.Unmarshal(raw, spec); err != nil {
			e := protoError(raw, err)
			e.Kind, e.Namespace, e.Name = r.Kind, r.Namespace, r.Name
			errs = append(errs, e)
			// protojson stops at the first problem. When that was an
			// unknown field, decode again without the unknown fields so
			// that the rest of the spec can still be validated.
			proto.Reset(spec)
			if !strings.HasPrefix(e.Message, "unknown field") ||
				(protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, spec) != nil {
				return nil, errs
			}
		}
	}
	r.Spec = spec
	return r, errs
}

// stringField reads a required string at the top level of a resource.
func stringField(top map[string]json.RawMessage, key string, errs *ErrorList) (string, bool) {
	raw, ok := top[key]
	if !ok || string(raw) == "null" {
		errs.errorf(nil, key, "required")
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		errs.errorf(nil, key, "must be a string, got %s", raw)
		return "", false
	}
	if s == "" {
		errs.errorf(nil, key, "required")
		return "", false
	}
	return s, true
}

// decodeMeta fills r.Meta from the metadata mapping.
func decodeMeta(r *Resource, raw json.RawMessage, stored bool, errs *ErrorList) {
	r.Namespace = DefaultNamespace
	if raw == nil || string(raw) == "null" {
		errs.errorf(nil, "metadata.name", "required")
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		errs.errorf(nil, "metadata", "must be a mapping, got %s", raw)
		return
	}
	str := func(key string) string {
		v, ok := m[key]
		if !ok || string(v) == "null" {
			return ""
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			errs.errorf(nil, "metadata."+key, "must be a string, got %s", v)
		}
		return s
	}
	r.Name = str("name")
	if ns := str("namespace"); ns != "" {
		r.Namespace = ns
	}
	r.Labels = stringMap(m["labels"], "metadata.labels", errs)
	r.Annotations = stringMap(m["annotations"], "metadata.annotations", errs)
	if !stored {
		return
	}
	if v := str("resourceVersion"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs.errorf(nil, "metadata.resourceVersion", "must be an integer, got %q", v)
		}
		r.ResourceVersion = n
	}
	if v, ok := m["generation"]; ok {
		if err := json.Unmarshal(v, &r.Generation); err != nil {
			errs.errorf(nil, "metadata.generation", "must be an integer, got %s", v)
		}
	}
	if v := str("creationTimestamp"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs.errorf(nil, "metadata.creationTimestamp", "must be an RFC 3339 time, got %q", v)
		}
		r.CreationTimestamp = t
	}
}

// stringMap decodes labels or annotations; an empty map becomes nil.
func stringMap(raw json.RawMessage, path string, errs *ErrorList) map[string]string {
	if raw == nil || string(raw) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		errs.errorf(nil, path, "must be a mapping of strings, got %s", raw)
		return nil
	}
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var s string
		if err := json.Unmarshal(m[k], &s); err != nil {
			errs.errorf(nil, field(path, k), "must be a string, got %s (quote it: \"%s\")", m[k], bytes.Trim(m[k], `"`))
			continue
		}
		out[k] = s
	}
	return out
}

var protoPosRE = regexp.MustCompile(`\(line (\d+):(\d+)\):\s*`)

// protoError turns a protojson error into an Error whose path points at the
// offending field of the spec.
func protoError(raw []byte, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "proto:")
	msg = strings.TrimLeft(msg, " \u00a0")
	loc := protoPosRE.FindStringSubmatchIndex(msg)
	if loc == nil {
		return &Error{Path: "spec", Message: msg}
	}
	line, _ := strconv.Atoi(msg[loc[2]:loc[3]])
	col, _ := strconv.Atoi(msg[loc[4]:loc[5]])
	text := strings.TrimSpace(msg[:loc[0]] + msg[loc[1]:])
	return &Error{Path: pathAt(raw, offsetOf(raw, line, col), "spec"), Message: text}
}
