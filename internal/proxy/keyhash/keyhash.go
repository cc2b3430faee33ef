// Package keyhash is the 64-bit hash weft-proxy's consistent-hash load
// balancing uses on both sides: the router hashes a request's key (a header,
// a cookie, the caller's address), the upstream tables place endpoint
// addresses. It is FNV-1a followed by MurmurHash3's fmix64 finalizer: fast,
// allocation-free and stable across versions of weft-proxy, but not the
// xxHash64 Envoy uses, so a key maps to an endpoint consistently within
// weft and not necessarily to the one Envoy would pick.
package keyhash

// String hashes s; seed varies the hash for a second, independent one.
func String(s string, seed uint64) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return Mix64(h)
}

// Mix64 is MurmurHash3's fmix64 finalizer: every input bit affects every
// output bit.
func Mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
