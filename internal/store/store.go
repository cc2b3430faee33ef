package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
)

// ErrNotFound is matched (errors.Is) by the errors of Get and Delete for a
// resource that does not exist.
var ErrNotFound = errors.New("not found")

// NotFoundError names a resource that does not exist.
type NotFoundError struct{ Key config.Key }

func (e *NotFoundError) Error() string { return e.Key.String() + " not found" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// The actions reported in a Result, in kubectl's words.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	ActionDeleted    = "deleted"
)

// Result says what a write did to one resource.
type Result struct {
	Key    config.Key
	Action string
}

// Options configures Open.
type Options struct {
	// Dir is the data directory; it is created if needed and the database
	// is Dir/config.db.
	Dir string
	// Logger receives debug logs of writes; nil discards them.
	Logger *slog.Logger
}

// Store is the bbolt-backed configuration store. See the package
// documentation for its locking.
type Store struct {
	db  *bolt.DB
	log *slog.Logger
	rev atomic.Int64

	writeMu sync.Mutex

	subMu  sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool

	// decoded is what All decoded, by database key: a resource whose
	// stored bytes did not change is not decoded again. Guarded by decMu.
	decMu   sync.Mutex
	decoded map[string]decodedResource
}

// decodedResource is a stored resource's bytes and what they decode to.
type decodedResource struct {
	data []byte
	r    *config.Resource
}

type subscriber struct {
	ch   chan int64
	once sync.Once
}

var (
	bucketMeta      = []byte("meta")
	bucketResources = []byte("resources")
	keyRevision     = []byte("revision")
)

// Open opens (creating if needed) the store in opts.Dir. It fails, rather
// than waiting, when another process holds the database open.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("open store: no data directory given")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(opts.Dir, "config.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: the database is in use by another process", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, log: log, subs: map[*subscriber]struct{}{}}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketResources); err != nil {
			return err
		}
		rev, err := readRevision(meta)
		s.rev.Store(rev)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	log.Debug("store opened", "path", path, "revision", s.rev.Load())
	return s, nil
}

// Close closes the database and every subscriber channel.
func (s *Store) Close() error {
	s.subMu.Lock()
	s.closed = true
	subs := s.subs
	s.subs = nil
	s.subMu.Unlock()
	for sub := range subs {
		sub.once.Do(func() { close(sub.ch) })
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Revision returns the store revision: 0 for a new store, then one more for
// every Apply or Delete that changed something.
func (s *Store) Revision() int64 { return s.rev.Load() }

// Subscribe returns a channel that receives the store revision after every
// change. The channel holds at most one value: a reader that falls behind
// gets the latest revision, and writers never wait for it. cancel (safe to
// call more than once) closes the channel, as does Close.
func (s *Store) Subscribe() (ch <-chan int64, cancel func()) {
	sub := &subscriber{ch: make(chan int64, 1)}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.closed {
		close(sub.ch)
		return sub.ch, func() {}
	}
	s.subs[sub] = struct{}{}
	return sub.ch, func() {
		s.subMu.Lock()
		delete(s.subs, sub)
		s.subMu.Unlock()
		sub.once.Do(func() { close(sub.ch) })
	}
}

// notify hands rev to every subscriber, replacing any unread revision.
// Callers hold writeMu.
func (s *Store) notify(rev int64) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for sub := range s.subs {
		select {
		case <-sub.ch:
		default:
		}
		sub.ch <- rev // cannot block: the buffer is empty and only writers, serialized by writeMu, send
	}
}

// Apply writes resources, all or none, in one transaction. The caller
// validates them first. A resource whose labels, annotations or spec
// differ from the stored one is written with ResourceVersion set to the new
// revision; its Generation goes up by one only when the spec changed, and
// CreationTimestamp is set when it is created. When nothing changes the
// revision stays as it is. The resources passed in are not modified.
func (s *Store) Apply(rs []*config.Resource) (rev int64, results []Result, err error) {
	for _, r := range rs {
		if err := checkResource(r); err != nil {
			return s.Revision(), nil, fmt.Errorf("apply: %w", err)
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	rev = s.rev.Load()
	now := time.Now().UTC().Truncate(time.Second)
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResources)
		newRev := rev + 1
		changed := false
		results = results[:0]
		for _, in := range rs {
			key := dbKey(in.Key())
			res := Result{Key: in.Key()}
			stored := *in
			stored.Labels, stored.Annotations = nonEmpty(in.Labels), nonEmpty(in.Annotations)
			old, err := decodeStored(b.Get(key))
			if err != nil {
				return fmt.Errorf("read %s: %w", in.Key(), err)
			}
			switch {
			case old == nil:
				res.Action = ActionCreated
				stored.Generation = 1
				stored.CreationTimestamp = now
			case proto.Equal(old.Spec, in.Spec) && maps.Equal(old.Labels, stored.Labels) && maps.Equal(old.Annotations, stored.Annotations):
				results = append(results, Result{Key: in.Key(), Action: ActionUnchanged})
				continue
			default:
				res.Action = ActionConfigured
				stored.Generation = old.Generation
				if !proto.Equal(old.Spec, in.Spec) {
					stored.Generation++
				}
				stored.CreationTimestamp = old.CreationTimestamp
			}
			stored.ResourceVersion = newRev
			data, err := stored.MarshalJSON()
			if err != nil {
				return err
			}
			if err := b.Put(key, data); err != nil {
				return fmt.Errorf("write %s: %w", in.Key(), err)
			}
			changed = true
			results = append(results, res)
		}
		if !changed {
			return nil
		}
		rev = newRev
		return writeRevision(tx.Bucket(bucketMeta), newRev)
	})
	if err != nil {
		return s.rev.Load(), nil, fmt.Errorf("apply: %w", err)
	}
	s.committed(rev, "apply", results)
	return rev, results, nil
}

// Delete removes resources, all or none: when any key does not exist, the
// error names every missing one (and matches ErrNotFound) and nothing is
// deleted.
func (s *Store) Delete(keys []config.Key) (rev int64, results []Result, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	rev = s.rev.Load()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResources)
		var missing []error
		seen := map[config.Key]bool{}
		results = results[:0]
		for _, k := range keys {
			if seen[k] {
				continue
			}
			seen[k] = true
			if b.Get(dbKey(k)) == nil {
				missing = append(missing, &NotFoundError{Key: k})
				continue
			}
			if err := b.Delete(dbKey(k)); err != nil {
				return fmt.Errorf("delete %s: %w", k, err)
			}
			results = append(results, Result{Key: k, Action: ActionDeleted})
		}
		if len(missing) > 0 {
			return errors.Join(missing...)
		}
		if len(results) == 0 {
			return nil
		}
		rev++
		return writeRevision(tx.Bucket(bucketMeta), rev)
	})
	if err != nil {
		return s.rev.Load(), nil, err
	}
	s.committed(rev, "delete", results)
	return rev, results, nil
}

// committed publishes a new revision after a successful write. Callers
// hold writeMu.
func (s *Store) committed(rev int64, op string, results []Result) {
	if rev == s.rev.Load() {
		return
	}
	s.rev.Store(rev)
	s.log.Debug("store "+op, "revision", rev, "resources", len(results))
	s.notify(rev)
}

// Get returns one resource, or an error matching ErrNotFound.
func (s *Store) Get(key config.Key) (*config.Resource, error) {
	var r *config.Resource
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = decodeStored(tx.Bucket(bucketResources).Get(dbKey(key)))
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		if r == nil {
			return &NotFoundError{Key: key}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// List returns the resources of one kind (every kind when kind is empty) in
// one namespace (every namespace when namespace is empty), sorted by kind,
// namespace and name.
func (s *Store) List(kind config.Kind, namespace string) ([]*config.Resource, error) {
	var out []*config.Resource
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = list(tx, kind, namespace)
		return err
	})
	return out, err
}

// All returns every resource and the revision they were read at, in one
// consistent read. A resource unchanged since the last All is the same
// value as then: the control plane reads every resource for every push,
// and a mesh of a thousand services would decode a thousand each time. The
// resources are shared: callers must not modify them.
func (s *Store) All() (rev int64, rs []*config.Resource, err error) {
	s.decMu.Lock()
	defer s.decMu.Unlock()
	next := make(map[string]decodedResource, len(s.decoded))
	err = s.db.View(func(tx *bolt.Tx) error {
		if rev, err = readRevision(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		rs, err = listWith(tx, "", "", func(k, v []byte) (*config.Resource, error) {
			d, ok := s.decoded[string(k)]
			if !ok || !bytes.Equal(d.data, v) {
				r, err := decodeStored(v)
				if err != nil {
					return nil, err
				}
				// bbolt's bytes are valid only in the transaction.
				d = decodedResource{data: bytes.Clone(v), r: r}
			}
			next[string(k)] = d
			return d.r, nil
		})
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	s.decoded = next
	return rev, rs, nil
}

func list(tx *bolt.Tx, kind config.Kind, namespace string) ([]*config.Resource, error) {
	return listWith(tx, kind, namespace, func(_, v []byte) (*config.Resource, error) { return decodeStored(v) })
}

// listWith is list with the decoding of each key and value given.
func listWith(tx *bolt.Tx, kind config.Kind, namespace string, decode func(k, v []byte) (*config.Resource, error)) ([]*config.Resource, error) {
	var out []*config.Resource
	c := tx.Bucket(bucketResources).Cursor()
	var prefix []byte
	if kind != "" {
		prefix = []byte(string(kind) + "\x00")
	}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		r, err := decode(k, v)
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", strings.ReplaceAll(string(k), "\x00", "/"), err)
		}
		if namespace != "" && r.Namespace != namespace {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *config.Resource) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

func checkResource(r *config.Resource) error {
	switch {
	case r == nil:
		return errors.New("nil resource")
	case r.Kind == "" || r.Namespace == "" || r.Name == "":
		return fmt.Errorf("resource %q has no kind, namespace or name", r.Key())
	case r.Spec == nil:
		return fmt.Errorf("%s has no spec", r.Key())
	case strings.ContainsRune(string(r.Kind)+r.Namespace+r.Name, 0):
		return fmt.Errorf("%q: names must not contain NUL", r.Key())
	}
	return nil
}

func dbKey(k config.Key) []byte {
	return []byte(string(k.Kind) + "\x00" + k.Namespace + "\x00" + k.Name)
}

// decodeStored decodes a stored value; nil data gives a nil resource.
func decodeStored(data []byte) (*config.Resource, error) {
	if data == nil {
		return nil, nil
	}
	return config.UnmarshalResource(data)
}

func readRevision(b *bolt.Bucket) (int64, error) {
	v := b.Get(keyRevision)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt revision: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func writeRevision(b *bolt.Bucket, rev int64) error {
	return b.Put(keyRevision, binary.BigEndian.AppendUint64(nil, uint64(rev)))
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
