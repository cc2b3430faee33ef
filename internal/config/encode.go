package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// jsonResource is the Kubernetes shape of a resource.
type jsonResource struct {
	APIVersion string          `json:"apiVersion"`
	Kind       Kind            `json:"kind"`
	Metadata   jsonMeta        `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type jsonMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
}

// MarshalJSON writes the resource the way Kubernetes would:
// {"apiVersion", "kind", "metadata": {...}, "spec": {...}}, with the spec in
// protojson's camelCase field names (the names Istio YAML uses),
// resourceVersion as a string and creationTimestamp in RFC 3339 (seconds).
// An empty APIVersion is written as networking.istio.io/v1. The output is
// compact and deterministic.
func (r *Resource) MarshalJSON() ([]byte, error) {
	spec := []byte("{}")
	if r.Spec != nil {
		b, err := protojson.Marshal(r.Spec)
		if err != nil {
			return nil, fmt.Errorf("marshal %s spec: %w", r.Key(), err)
		}
		// protojson varies its whitespace on purpose; compact it so the
		// output is stable.
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return nil, fmt.Errorf("marshal %s spec: %w", r.Key(), err)
		}
		spec = buf.Bytes()
	}
	j := jsonResource{
		APIVersion: r.APIVersion,
		Kind:       r.Kind,
		Metadata: jsonMeta{
			Name:        r.Name,
			Namespace:   r.Namespace,
			Labels:      r.Labels,
			Annotations: r.Annotations,
			Generation:  r.Generation,
		},
		Spec: spec,
	}
	if j.APIVersion == "" {
		j.APIVersion = APIVersions[0]
	}
	if r.ResourceVersion != 0 {
		j.Metadata.ResourceVersion = strconv.FormatInt(r.ResourceVersion, 10)
	}
	if !r.CreationTimestamp.IsZero() {
		j.Metadata.CreationTimestamp = r.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	return json.Marshal(j)
}

// ToYAML writes the resource as Kubernetes-style YAML (keys sorted), for
// `weft get -o yaml`.
func ToYAML(r *Resource) ([]byte, error) {
	js, err := r.MarshalJSON()
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("marshal %s as YAML: %w", r.Key(), err)
	}
	return y, nil
}
