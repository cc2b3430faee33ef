// Package registry knows the mesh's services and their endpoints. Endpoints
// come from proxies that register themselves when they connect, from
// WorkloadEntry resources and from ServiceEntry resources.
package registry
