package up

import (
	"crypto/rand"
	"fmt"
)

// Workload is one sample application instance and its sidecar.
type Workload struct {
	App            string // bookinfo subcommand and service name
	Version        string
	ServiceAccount string
	ServicePort    uint32
	Env            []string
}

// bookinfo is Istio's Bookinfo: the same services, versions and service
// accounts.
var bookinfo = []Workload{
	{App: "productpage", Version: "v1", ServiceAccount: "bookinfo-productpage", ServicePort: 9080},
	{App: "details", Version: "v1", ServiceAccount: "bookinfo-details", ServicePort: 9080},
	{App: "reviews", Version: "v1", ServiceAccount: "bookinfo-reviews", ServicePort: 9080},
	{App: "reviews", Version: "v2", ServiceAccount: "bookinfo-reviews", ServicePort: 9080},
	{App: "reviews", Version: "v3", ServiceAccount: "bookinfo-reviews", ServicePort: 9080},
	{App: "ratings", Version: "v1", ServiceAccount: "bookinfo-ratings", ServicePort: 9080},
}

// podName returns a Kubernetes-like pod name: reviews-v2-7c4xq.
func podName(app, version string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return fmt.Sprintf("%s-%s-%s", app, version, b)
}
