package config

import (
	"fmt"
	"strings"
)

// Error is one problem found while decoding or validating a resource. It
// names the file, the document, the resource, the field and the rule broken,
// so that a user can find and fix it without reading Weft's source.
type Error struct {
	// File is the file name as given to Decode; empty when the resource did
	// not come from a file.
	File string
	// Index is the 0-based index of the document in File, counting only
	// non-empty documents. It is printed 1-based ("document 1").
	Index int
	// Kind, Namespace and Name identify the resource when they are known.
	Kind      Kind
	Namespace string
	Name      string
	// Path is the field path, e.g. spec.http[0].route[1].weight; empty when
	// the problem is with the document as a whole.
	Path string
	// Message says what is wrong.
	Message string
}

// Error formats the error as
// "FILE: document N (KIND NAMESPACE/NAME): PATH: MESSAGE", leaving out the
// parts that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s: document %d", e.File, e.Index+1)
	}
	if e.Kind != "" {
		who := string(e.Kind)
		if e.Name != "" {
			who += " " + e.Namespace + "/" + e.Name
		}
		if b.Len() > 0 {
			fmt.Fprintf(&b, " (%s)", who)
		} else {
			b.WriteString(who)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrorList collects every problem found, in the order found. A nil or
// empty ErrorList means no problems; functions returning it as an error
// return a nil error instead of an empty list.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// errorf appends an error about resource r at path.
func (l *ErrorList) errorf(r *Resource, path, format string, args ...any) {
	e := &Error{Path: path, Message: fmt.Sprintf(format, args...)}
	if r != nil {
		e.Kind, e.Namespace, e.Name = r.Kind, r.Namespace, r.Name
	}
	*l = append(*l, e)
}
