// Package dns is the sidecar's DNS proxy. It serves UDP and TCP (by
// default on 127.0.0.1:15053, where `weft-proxy iptables --capture-dns`
// sends the workload's DNS). It answers A and AAAA queries for the mesh's
// service names from a Table, resolving the short forms Kubernetes allows
// from the workload's namespace (reviews, reviews.default,
// reviews.default.svc, reviews.default.svc.cluster.local) as a resolver
// with the search path "NS.svc.DOMAIN svc.DOMAIN DOMAIN" would, and
// forwards every other query unchanged to the upstream resolvers of
// /etc/resolv.conf, relaying their answers (NXDOMAIN included) as they are.
//
// Concurrency: Serve owns one goroutine reading the UDP socket and one
// accepting TCP connections; each UDP query is handled in its own
// goroutine (at most maxInflight at once; more are dropped, and the client
// retries), each TCP connection in its own goroutine that answers its
// queries in order. The Table is swapped atomically by SetTable and only
// read by the handlers; nothing else is shared. Cancelling Serve's context
// closes the sockets, and Serve returns when every goroutine has finished.
package dns
