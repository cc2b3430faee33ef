package up

import (
	"crypto/rand"
	"fmt"
)

// Workload is one sample application instance and its sidecar.
type Workload struct {
	App            string // service name
	Version        string
	ServiceAccount string
	ServicePort    uint32
	// PortName declares the port's protocol the Istio way: "http", or
	// "tcp-..." for opaque TCP that must never be sniffed.
	PortName string
	// Binary and Args run the app; Binary is in the bin dir.
	Binary string
	Args   []string
	Env    []string
}

// bookinfo is Istio's Bookinfo: the same services, versions and service
// accounts.
var bookinfo = []Workload{
	bookinfoApp("productpage", "v1"),
	bookinfoApp("details", "v1"),
	bookinfoApp("reviews", "v1"),
	bookinfoApp("reviews", "v2"),
	bookinfoApp("reviews", "v3"),
	bookinfoApp("ratings", "v1"),
}

func bookinfoApp(app, version string) Workload {
	return Workload{App: app, Version: version, ServiceAccount: "bookinfo-" + app, ServicePort: 9080,
		PortName: "http", Binary: "bookinfo", Args: []string{app}}
}

// tcpSamples are opaque TCP services: an echo server in two versions, which
// start their answers with "v1" and "v2" (as Istio's tcp-echo for its TCP
// traffic shifting task), and a server-first greeter, on ports declared
// TCP.
var tcpSamples = []Workload{
	{App: "tcp-echo", Version: "v1", ServiceAccount: "tcp-echo", ServicePort: 9000, PortName: "tcp-echo",
		Binary: "tcpecho", Args: []string{"echo", "--prefix", "v1"}},
	{App: "tcp-echo", Version: "v2", ServiceAccount: "tcp-echo", ServicePort: 9000, PortName: "tcp-echo",
		Binary: "tcpecho", Args: []string{"echo", "--prefix", "v2"}},
	{App: "greeter", Version: "v1", ServiceAccount: "greeter", ServicePort: 9001, PortName: "tcp-greeter",
		Binary: "tcpecho", Args: []string{"greet"}},
}

// grpcSamples is a gRPC server (the standard health service), on a port
// declared GRPC by its name, so the mesh speaks HTTP/2 to it end to end.
var grpcSamples = []Workload{
	{App: "grpc-echo", Version: "v1", ServiceAccount: "grpc-echo", ServicePort: 7070, PortName: "grpc",
		Binary: "grpcecho"},
}

// samples are the sets of workloads `weft up --samples` knows.
var samples = map[string][]Workload{"bookinfo": bookinfo, "tcp": tcpSamples, "grpc": grpcSamples}

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
