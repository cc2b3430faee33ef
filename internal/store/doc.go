// Package store is Weft's local configuration store: config.Resources kept
// in a bbolt database (<dir>/config.db), with a store-wide revision that
// increases by one with every write that changes something.
//
// # Layout
//
// Bucket "meta" holds the key "revision" (8 bytes, big endian). Bucket
// "resources" maps "Kind\x00namespace\x00name" to the resource in the JSON
// shape of config.Resource.MarshalJSON, server-set metadata included.
//
// # Concurrency
//
// A Store is safe for concurrent use and starts no goroutines.
//
//   - Readers (Get, List, All) use bbolt read transactions and never block
//     each other or writers; All reads the revision and every resource in one
//     transaction, so what it returns is consistent. All keeps what it
//     decoded (Store.decMu guards it, and serializes All calls) and hands
//     out an unchanged resource again instead of decoding it anew.
//   - Writers (Apply, Delete) take Store.writeMu, run one bbolt update
//     transaction (all or nothing), publish the new revision in an atomic
//     (read by Revision) and notify subscribers, all before releasing
//     writeMu, so subscribers see revisions in increasing order.
//   - Store.subMu guards the set of subscriber channels. Each channel has a
//     buffer of one; a writer replaces an unread revision with the newer one
//     and never blocks, so a slow subscriber sees only the latest revision.
//     Cancel and Close close the channels.
package store
