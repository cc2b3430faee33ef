// Command gen writes weft-proxy's xDS types: go-control-plane's Envoy API,
// trimmed to the messages and fields weft-proxy's code names.
//
// It reads the descriptors go-control-plane registers, keeps a message when
// the sources of weft-proxy and of the control plane's translation
// (internal/proxy and internal/translate, tests and test data included)
// name its Go type or when a kept field refers to it, and keeps a field when they
// name its Go field, getter, proto name or JSON name, as a selector or as a
// key in a Go literal, YAML or JSON. Options
// (validation rules, annotations) are dropped; names, numbers, types and
// oneofs are Envoy's, so the wire format is unchanged. protoc-gen-go's own
// generator then writes the Go code, and the result registers in
// xdsapi.Files and xdsapi.Types instead of protobuf's global registries.
//
// Run it from the module root after weft-proxy starts reading a new field
// or message:
//
//	go run ./internal/proxy/xdsapi/gen
//
// With -check it writes nothing and fails when the committed code differs
// from what it would write.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	// The packages weft-proxy decodes; their imports come with them.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/dns_filter/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

const (
	module  = "github.com/weftmesh/weft"
	apiDir  = "internal/proxy/xdsapi"
	apiPath = module + "/" + apiDir
)

func main() {
	check := flag.Bool("check", false, "write nothing; fail when the committed code is stale")
	root := flag.String("root", ".", "module root")
	flag.Parse()
	if err := run(*root, *check); err != nil {
		fmt.Fprintln(os.Stderr, "xdsapi/gen:", err)
		os.Exit(1)
	}
}

func run(root string, check bool) error {
	words := map[string]bool{}
	for _, dir := range scanned {
		if err := scanWords(words, filepath.Join(root, dir), filepath.Join(root, apiDir)); err != nil {
			return err
		}
	}
	files, err := generate(words)
	if err != nil {
		return err
	}
	return write(filepath.Join(root, apiDir), files, check)
}

// nameRE finds the places a source names a message or field: a selector
// (routev3.RouteAction, r.GetTimeout(), r.Timeout), or a key in a Go
// composite literal, YAML or JSON (Timeout: d, timeout: 1s, "timeout": ...).
// Most prose does not match; what does only keeps a field or two more than
// weft-proxy needs.
var nameRE = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*)"?[ \t]*:[^:=]`)

// scanned are the trees whose names decide what is kept: weft-proxy, which
// reads the fields, and the control plane's translation, which writes them,
// so that /config_dump shows all that weft's control plane sends.
var scanned = []string{"internal/proxy", "internal/translate"}

// scanWords adds the names used in the files under dir to words, leaving
// out skip (the generated code, which names everything it keeps).
func scanWords(words map[string]bool, dir, skip string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == skip {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".go", ".yaml", ".yml", ".json", ".golden":
		default:
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range nameRE.FindAllSubmatch(b, -1) {
			words[string(m[1])+string(m[2])] = true
		}
		return nil
	})
}

// trimmed reports whether a file is regenerated here. Well-known types,
// google.rpc and grpc's own protos keep their Go packages.
func trimmed(path string) bool {
	return !strings.HasPrefix(path, "google/") && !strings.HasPrefix(path, "grpc/")
}

// generate returns the Go files to write, keyed by path below apiDir.
func generate(words map[string]bool) (map[string][]byte, error) {
	var all []protoreflect.FileDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		all = append(all, fd)
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].Path() < all[j].Path() })

	// Go names as protoc-gen-go derives them, from the untrimmed files.
	full, err := plugin(all, nil)
	if err != nil {
		return nil, err
	}
	k := newKeeper(words, full.Files)
	for _, f := range full.Files {
		if strings.HasPrefix(f.Desc.Path(), "envoy/") {
			k.seed(f)
		}
	}
	k.close()

	// The trimmed descriptors, in dependency order.
	var out []*descriptorpb.FileDescriptorProto
	var gen []string
	for _, fd := range ordered(all) {
		if !trimmed(fd.Path()) {
			out = append(out, protodesc.ToFileDescriptorProto(fd))
			continue
		}
		if p := k.trim(fd); p != nil {
			out = append(out, p)
			gen = append(gen, p.GetName())
		}
	}
	kept := map[string]bool{}
	for _, p := range out {
		kept[p.GetName()] = true
	}
	for _, p := range out {
		p.Dependency = slices.DeleteFunc(p.Dependency, func(d string) bool { return !kept[d] })
	}

	pl, err := pluginFromProtos(out, gen)
	if err != nil {
		return nil, err
	}
	internal_gengo.GenerateVersionMarkers = false
	res := map[string][]byte{}
	for _, f := range pl.Files {
		if !f.Generate {
			continue
		}
		internal_gengo.GenerateFile(pl, f)
		doc := strings.TrimPrefix(string(f.GoImportPath), apiPath+"/") + "/doc.go"
		res[doc] = []byte(fmt.Sprintf(docTemplate, f.GoPackageName, f.Desc.Package(), f.GoPackageName))
	}
	resp := pl.Response()
	if resp.Error != nil {
		return nil, fmt.Errorf("protoc-gen-go: %s", resp.GetError())
	}
	for _, f := range resp.File {
		name := strings.TrimPrefix(f.GetName(), apiPath+"/")
		src, err := register([]byte(f.GetContent()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		res[name] = src
	}
	return res, nil
}

// docTemplate is the package comment of each generated package: its Go
// name, its proto package, its Go name.
const docTemplate = `// Code generated by weft's internal/proxy/xdsapi/gen. DO NOT EDIT.

// Package %s holds weft-proxy's Go types for the proto package
// %s, trimmed to the messages and fields weft reads or writes. See package
// xdsapi for how they are made and registered.
package %s
`

// ordered returns files with every file after its imports.
func ordered(all []protoreflect.FileDescriptor) []protoreflect.FileDescriptor {
	var out []protoreflect.FileDescriptor
	seen := map[string]bool{}
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := 0; i < imps.Len(); i++ {
			visit(imps.Get(i).FileDescriptor)
		}
		out = append(out, fd)
	}
	for _, fd := range all {
		visit(fd)
	}
	return out
}

// plugin runs protogen over the files, as protoc would hand them to
// protoc-gen-go, generating gen.
func plugin(all []protoreflect.FileDescriptor, gen []string) (*protogen.Plugin, error) {
	var ps []*descriptorpb.FileDescriptorProto
	for _, fd := range ordered(all) {
		ps = append(ps, protodesc.ToFileDescriptorProto(fd))
	}
	return pluginFromProtos(ps, gen)
}

func pluginFromProtos(ps []*descriptorpb.FileDescriptorProto, gen []string) (*protogen.Plugin, error) {
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: gen,
		ProtoFile:      ps,
		Parameter:      proto.String("paths=import"),
	}
	return protogen.Options{}.New(req)
}

// keeper decides what survives the trim.
type keeper struct {
	words  map[string]bool
	msgs   map[protoreflect.FullName]*protogen.Message
	enums  map[protoreflect.FullName]bool
	fields map[protoreflect.FullName]bool
	queue  []*protogen.Message
	byName map[protoreflect.FullName]*protogen.Message
}

func newKeeper(words map[string]bool, files []*protogen.File) *keeper {
	k := &keeper{
		words:  words,
		msgs:   map[protoreflect.FullName]*protogen.Message{},
		enums:  map[protoreflect.FullName]bool{},
		fields: map[protoreflect.FullName]bool{},
		byName: map[protoreflect.FullName]*protogen.Message{},
	}
	var walk func(ms []*protogen.Message)
	walk = func(ms []*protogen.Message) {
		for _, m := range ms {
			k.byName[m.Desc.FullName()] = m
			walk(m.Messages)
		}
	}
	for _, f := range files {
		walk(f.Messages)
	}
	return k
}

// seed keeps the messages and enums of f that the sources name.
func (k *keeper) seed(f *protogen.File) {
	var walk func(ms []*protogen.Message)
	walk = func(ms []*protogen.Message) {
		for _, m := range ms {
			if k.words[m.GoIdent.GoName] {
				k.keepMessage(m)
			}
			k.seedEnums(m.Enums)
			walk(m.Messages)
		}
	}
	walk(f.Messages)
	k.seedEnums(f.Enums)
}

func (k *keeper) seedEnums(es []*protogen.Enum) {
	for _, e := range es {
		named := k.words[e.GoIdent.GoName]
		for _, v := range e.Values {
			named = named || k.words[v.GoIdent.GoName]
		}
		if named {
			k.keepEnum(e)
		}
	}
}

func (k *keeper) keepEnum(e *protogen.Enum) {
	k.enums[e.Desc.FullName()] = true
	if p := e.Desc.Parent(); p != nil {
		if md, ok := p.(protoreflect.MessageDescriptor); ok {
			k.keepParent(md)
		}
	}
}

func (k *keeper) keepMessage(m *protogen.Message) {
	if _, ok := k.msgs[m.Desc.FullName()]; ok {
		return
	}
	k.msgs[m.Desc.FullName()] = m
	k.queue = append(k.queue, m)
	if md, ok := m.Desc.Parent().(protoreflect.MessageDescriptor); ok {
		k.keepParent(md)
	}
}

// keepParent keeps the message a kept nested type is declared in.
func (k *keeper) keepParent(md protoreflect.MessageDescriptor) {
	if m := k.byName[md.FullName()]; m != nil {
		k.keepMessage(m)
	}
}

// close keeps, for every kept message, the fields the sources name and
// the types those fields refer to.
func (k *keeper) close() {
	for len(k.queue) > 0 {
		m := k.queue[0]
		k.queue = k.queue[1:]
		for _, f := range m.Fields {
			if !m.Desc.IsMapEntry() && !k.named(f) {
				continue
			}
			k.fields[f.Desc.FullName()] = true
			if f.Message != nil && trimmed(f.Message.Desc.ParentFile().Path()) {
				k.keepMessage(f.Message)
			}
			if f.Enum != nil && trimmed(f.Enum.Desc.ParentFile().Path()) {
				k.keepEnum(f.Enum)
			}
		}
	}
}

func (k *keeper) named(f *protogen.Field) bool {
	if k.words[f.GoName] || k.words["Get"+f.GoName] || k.words[string(f.Desc.Name())] || k.words[f.Desc.JSONName()] {
		return true
	}
	return f.Oneof != nil && !f.Oneof.Desc.IsSynthetic() && k.words[f.GoIdent.GoName]
}

// trim returns fd with only the kept declarations, or nil when it keeps
// none.
func (k *keeper) trim(fd protoreflect.FileDescriptor) *descriptorpb.FileDescriptorProto {
	p := protodesc.ToFileDescriptorProto(fd)
	name := p.GetPackage()
	p.MessageType = k.trimMessages(protoreflect.FullName(name), p.MessageType)
	p.EnumType = k.trimEnums(protoreflect.FullName(name), p.EnumType)
	if len(p.MessageType) == 0 && len(p.EnumType) == 0 {
		return nil
	}
	goPkg := path.Base(path.Dir(fd.Path()))
	if i := strings.LastIndexByte(p.GetOptions().GetGoPackage(), ';'); i >= 0 {
		goPkg = p.GetOptions().GetGoPackage()[i+1:]
	}
	p.Options = &descriptorpb.FileOptions{GoPackage: proto.String(apiPath + "/" + path.Dir(fd.Path()) + ";" + goPkg)}
	p.Service, p.Extension, p.SourceCodeInfo = nil, nil, nil
	return p
}

func (k *keeper) trimMessages(scope protoreflect.FullName, ms []*descriptorpb.DescriptorProto) []*descriptorpb.DescriptorProto {
	var out []*descriptorpb.DescriptorProto
	for _, m := range ms {
		fn := scope.Append(protoreflect.Name(m.GetName()))
		if _, ok := k.msgs[fn]; !ok {
			continue
		}
		m.Field = slices.DeleteFunc(m.Field, func(f *descriptorpb.FieldDescriptorProto) bool {
			return !k.fields[fn.Append(protoreflect.Name(f.GetName()))]
		})
		// Renumber oneof indexes over the oneofs that still have fields,
		// keeping their order: the synthetic oneofs of proto3 optional
		// fields must stay after the real ones.
		used := map[int32]int32{}
		for _, f := range m.Field {
			if f.OneofIndex != nil {
				used[f.GetOneofIndex()] = 0
			}
		}
		var oneofs []*descriptorpb.OneofDescriptorProto
		for i, o := range m.OneofDecl {
			if _, ok := used[int32(i)]; ok {
				used[int32(i)] = int32(len(oneofs))
				oneofs = append(oneofs, &descriptorpb.OneofDescriptorProto{Name: o.Name})
			}
		}
		for _, f := range m.Field {
			if f.OneofIndex != nil {
				f.OneofIndex = proto.Int32(used[f.GetOneofIndex()])
			}
		}
		m.OneofDecl = oneofs
		for _, f := range m.Field {
			var packed *bool
			if f.Options != nil {
				packed = f.Options.Packed
			}
			f.Options = nil
			if packed != nil {
				f.Options = &descriptorpb.FieldOptions{Packed: packed}
			}
		}
		mapEntry := m.GetOptions().GetMapEntry()
		m.Options = nil
		if mapEntry {
			m.Options = &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
		}
		m.NestedType = k.trimMessages(fn, m.NestedType)
		m.EnumType = k.trimEnums(fn, m.EnumType)
		m.Extension, m.ExtensionRange, m.ReservedRange, m.ReservedName = nil, nil, nil, nil
		out = append(out, m)
	}
	return out
}

func (k *keeper) trimEnums(scope protoreflect.FullName, es []*descriptorpb.EnumDescriptorProto) []*descriptorpb.EnumDescriptorProto {
	var out []*descriptorpb.EnumDescriptorProto
	for _, e := range es {
		if !k.enums[scope.Append(protoreflect.Name(e.GetName()))] {
			continue
		}
		alias := e.GetOptions().GetAllowAlias()
		e.Options = nil
		if alias {
			e.Options = &descriptorpb.EnumOptions{AllowAlias: proto.Bool(true)}
		}
		for _, v := range e.Value {
			v.Options = nil
		}
		e.ReservedRange, e.ReservedName = nil, nil
		out = append(out, e)
	}
	return out
}

// register points a generated file's type builder at xdsapi's registries.
func register(src []byte) ([]byte, error) {
	for _, r := range []struct{ after, insert string }{
		{"import (\n", "\txdsapi \"" + apiPath + "\"\n"},
		{"GoPackagePath: reflect.TypeOf(x{}).PkgPath(),\n", "FileRegistry: xdsapi.Files,\n"},
		{"DependencyIndexes: ", ""},
	} {
		if !bytes.Contains(src, []byte(r.after)) {
			return nil, fmt.Errorf("generated code has no %q", r.after)
		}
		if r.insert != "" {
			src = bytes.Replace(src, []byte(r.after), []byte(r.after+r.insert), 1)
		}
	}
	src = bytes.Replace(src, []byte("}.Build()"), []byte("TypeRegistry: xdsapi.Types,\n}.Build()"), 1)
	return format.Source(src)
}

// write replaces the generated tree under dir with files, or with check
// compares them.
func write(dir string, files map[string][]byte, check bool) error {
	old := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "gen" {
			return filepath.SkipDir
		}
		if err == nil && !d.IsDir() && filepath.Dir(p) != dir && (strings.HasSuffix(p, ".pb.go") || d.Name() == "doc.go") {
			rel, _ := filepath.Rel(dir, p)
			old[filepath.ToSlash(rel)] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	var stale []string
	for name, src := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		cur, err := os.ReadFile(p)
		delete(old, name)
		if err == nil && bytes.Equal(cur, src) {
			continue
		}
		stale = append(stale, name)
		if check {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, src, 0o644); err != nil {
			return err
		}
	}
	for name := range old {
		stale = append(stale, name+" (no longer generated)")
		if !check {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
				return err
			}
		}
	}
	sort.Strings(stale)
	if check && len(stale) > 0 {
		return fmt.Errorf("generated xDS types are stale; run go run ./%s/gen:\n  %s", apiDir, strings.Join(stale, "\n  "))
	}
	return nil
}
