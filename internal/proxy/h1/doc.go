// Package h1 reads and writes HTTP/1.x message heads for weft-proxy's hot
// path without the per-message allocations of net/http.
//
// RequestReader and ResponseReader parse a request or response head from a
// *bufio.Reader with exactly the rules of http.ReadRequest and
// http.ReadResponse (the same accepted messages, fields and body framing;
// the differential fuzz tests hold them to that), but into objects that
// belong to the connection and are refilled for every message: the
// *http.Request or *http.Response, its Header map, URL and body reader.
// Header keys are interned through a static table of common names and a
// per-connection cache; header values and request targets through a
// per-connection cache, so that a keep-alive connection repeating the same
// headers allocates nothing for them; a value that changes with every
// message in the same place (a request id) is cut from a block shared
// with the next such values.
//
// Reuse means aliasing: a message returned by a reader is valid until the
// next call on that reader. A caller that hands the message to something
// that may keep it (a retry, a mirror, an asynchronous log, net/http's
// Transport, which may still read the request body after RoundTrip returns)
// calls Detach first; the reader then fills fresh objects next time.
//
// RequestWriter writes a client request as http.Request.Write does, headers
// sorted, without allocating on the common path.
//
// None of the types is safe for concurrent use: each belongs to one
// connection, which one goroutine serves at a time.
package h1
