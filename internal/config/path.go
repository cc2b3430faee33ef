package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// field appends an object key to a field path: spec + http = spec.http.
// Keys that are not plain identifiers (map keys such as label names) are
// quoted: labels["app.kubernetes.io/name"].
func field(parent, key string) string {
	plain := key != ""
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return parent + "[" + strconv.Quote(key) + "]"
	case parent == "":
		return key
	default:
		return parent + "." + key
	}
}

// index appends an array index to a field path: http + 0 = http[0].
func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// offsetOf converts a protojson position (1-based line, 1-based column
// counted in runes) into a byte offset in data.
func offsetOf(data []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return len(data)
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(data); c++ {
		_, n := utf8.DecodeRune(data[off:])
		off += n
	}
	return off
}

// pathAt returns the field path, below root, of the JSON token that starts
// at byte offset off of data: the key's path for an object key, the
// element's path for a value. It returns root when off is not inside a
// well-formed prefix of data.
func pathAt(data []byte, off int, root string) string {
	type frame struct {
		path    string // path of the container itself
		array   bool
		index   int    // next element index, arrays only
		key     string // current key, objects only
		wantKey bool   // objects only: next token is a key
	}
	// elemPath is the path of the value about to be read in f.
	elemPath := func(f *frame) string {
		if f.array {
			return index(f.path, f.index)
		}
		return field(f.path, f.key)
	}
	// done advances the container after one of its values ended.
	done := func(f *frame) {
		if f.array {
			f.index++
		} else {
			f.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return root
		}
		end := int(dec.InputOffset())
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		here := root
		isKey := top != nil && !top.array && top.wantKey
		switch {
		case isKey:
			here = field(top.path, fmt.Sprint(tok))
		case top != nil:
			here = elemPath(top)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			here = top.path
		}
		if end > off {
			return here
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			stack = append(stack, &frame{path: here, array: tok == json.Delim('['), wantKey: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				done(stack[len(stack)-1])
			}
		default:
			if isKey {
				top.key = fmt.Sprint(tok)
				top.wantKey = false
			} else if top != nil {
				done(top)
			}
		}
	}
}
