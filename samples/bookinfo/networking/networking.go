// Package networking holds Bookinfo's Istio networking resources
// (networking.istio.io/v1 Gateway, VirtualService and DestinationRule YAML),
// written to match Istio's samples/bookinfo/networking, so that tools such
// as `weft up` can apply them.
package networking

import "embed"

// FS holds every YAML file of this directory, by file name (for example
// "bookinfo-gateway.yaml").
//
//go:embed *.yaml
var FS embed.FS
