// Package app implements the four Bookinfo services (productpage, details,
// reviews and ratings), a Go rewrite of Istio's Bookinfo sample with the same
// paths, ports, JSON shapes, header propagation and failure behaviour, so
// Istio's Bookinfo YAML and tasks work against it unchanged.
//
// Each service is an http.Handler built from an options struct
// (NewDetails, NewRatings, NewReviews, NewProductPage); Run parses the
// command line and environment, serves one of them and shuts down gracefully
// when its context ends.
//
// Services call each other with plain HTTP through one shared keep-alive
// Transport that honours HTTP_PROXY, so in Weft's local mode every call goes
// through the caller's sidecar, and the URL host (for example reviews:9080)
// selects the route.
package app
