// Package controlapi is the local HTTP API between the weft CLI and the
// control plane: the request and response shapes, and a client for them.
// The control plane serves it on loopback (default 127.0.0.1:15014) and
// records the address in DATA_DIR/control.json.
package controlapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/xdsserver"
)

// StateFile is the name, under the data directory, of the file in which a
// running control plane records its addresses.
const StateFile = "control.json"

// State is what a running control plane writes to StateFile.
type State struct {
	PID     int    `json:"pid"`
	APIAddr string `json:"apiAddr"`
	XDSAddr string `json:"xdsAddr"`
}

// ReadState reads the control plane's state file from dataDir.
func ReadState(dataDir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dataDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("no control plane is running with data dir %s (start one with `weft up` or `weft control`)", dataDir)
	}
	if err != nil {
		return st, fmt.Errorf("read control plane state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read control plane state %s: %w", filepath.Join(dataDir, StateFile), err)
	}
	return st, nil
}

// WriteState records st in dataDir atomically.
func WriteState(dataDir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write control plane state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dataDir, StateFile))
}

// File is one configuration file as the user named it.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// ApplyRequest asks the control plane to store every resource in Files, or
// none of them.
type ApplyRequest struct {
	Files  []File `json:"files"`
	DryRun bool   `json:"dryRun,omitempty"`
}

// DeleteRequest deletes the resources in Files, or the one named by
// Kind/Namespace/Name.
type DeleteRequest struct {
	Files     []File `json:"files,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

// Result is what happened to one resource.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Action    string `json:"action"` // created, configured, unchanged, deleted
}

// ConfigError is one problem with the user's input, located precisely.
type ConfigError struct {
	File      string `json:"file,omitempty"`
	Index     int    `json:"index"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Path      string `json:"path,omitempty"`
	Message   string `json:"message"`
	// Text is the whole error as the user should see it.
	Text string `json:"text"`
}

// ChangeResponse answers apply and delete.
type ChangeResponse struct {
	Revision int64         `json:"revision"`
	Results  []Result      `json:"results,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Errors   []ConfigError `json:"errors,omitempty"`
}

// InvalidError is returned by Apply and Delete when the input was rejected;
// nothing was stored.
type InvalidError struct{ Errors []ConfigError }

func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, ce := range e.Errors {
		lines[i] = ce.Text
	}
	return strings.Join(lines, "\n")
}

// Client talks to a control plane's API.
type Client struct {
	Base string // http://127.0.0.1:15014
	HTTP *http.Client
}

// NewClient returns a client for the API at addr (host:port).
func NewClient(addr string) *Client {
	return &Client{Base: "http://" + addr, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Apply stores the resources in req.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (*ChangeResponse, error) {
	var resp ChangeResponse
	return &resp, c.change(ctx, "/api/v1/apply", req, &resp)
}

// Delete removes resources.
func (c *Client) Delete(ctx context.Context, req DeleteRequest) (*ChangeResponse, error) {
	var resp ChangeResponse
	return &resp, c.change(ctx, "/api/v1/delete", req, &resp)
}

func (c *Client) change(ctx context.Context, path string, req any, resp *ChangeResponse) error {
	if err := c.do(ctx, http.MethodPost, path, req, resp); err != nil {
		return err
	}
	if len(resp.Errors) > 0 {
		return &InvalidError{Errors: resp.Errors}
	}
	return nil
}

// Get lists resources as Kubernetes-shaped JSON objects. Empty kind,
// namespace or name match everything.
func (c *Client) Get(ctx context.Context, kind, namespace, name string) ([]json.RawMessage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": kind, "namespace": namespace, "name": name} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out []json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/api/v1/resources?"+q.Encode(), nil, &out)
}

// ProxyStatus reports every connected proxy.
func (c *Client) ProxyStatus(ctx context.Context) ([]xdsserver.ProxyStatus, error) {
	var out []xdsserver.ProxyStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/proxy-status", nil, &out)
}

// Workload is one proxy in the control plane's registry, as
// GET /api/v1/workloads lists it.
type Workload struct {
	Type      string            `json:"type"` // sidecar or router (a gateway)
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Service   string            `json:"service,omitempty"` // empty for gateways
	Labels    map[string]string `json:"labels,omitempty"`
}

// Workloads lists the proxies in the registry, connected or within their
// grace period.
func (c *Client) Workloads(ctx context.Context) ([]Workload, error) {
	var out []Workload
	if err := c.do(ctx, http.MethodGet, "/api/v1/workloads", nil, &out); err != nil {
		return nil, fmt.Errorf("list workloads: %w", err)
	}
	return out, nil
}

// ProxyConfig is the answer to GET /api/v1/proxy-config: the resources of
// one type in the snapshot the control plane holds for one proxy.
type ProxyConfig struct {
	Proxy   string `json:"proxy"`   // the proxy's node ID
	Type    string `json:"type"`    // listeners, routes, clusters or endpoints
	Version string `json:"version"` // empty before the proxy's first push
	// Resources are protojson-encoded Anys ("@type" and the resource's
	// fields), sorted by name.
	Resources []json.RawMessage `json:"resources"`
}

// ProxyConfig returns the resources of type typ (listeners, routes,
// clusters or endpoints) that the control plane holds for the proxy with
// node ID proxy.
func (c *Client) ProxyConfig(ctx context.Context, proxy, typ string) (*ProxyConfig, error) {
	q := url.Values{"proxy": {proxy}, "type": {typ}}
	var out ProxyConfig
	if err := c.do(ctx, http.MethodGet, "/api/v1/proxy-config?"+q.Encode(), nil, &out); err != nil {
		return nil, fmt.Errorf("%s of proxy %s: %w", typ, proxy, err)
	}
	return &out, nil
}

// Sync reports whether every proxy has ACKed store revision rev.
func (c *Client) Sync(ctx context.Context, rev int64) (*xdsserver.SyncReport, error) {
	return c.SyncWait(ctx, rev, 0)
}

// SyncWait is Sync answered once every proxy has ACKed store revision rev
// (or one has rejected it), or after wait, whichever comes first; a wait
// of 0 answers at once. The control plane holds a question for at most a
// minute, and the Client's HTTP timeout (30 s from NewClient) bounds it
// too.
func (c *Client) SyncWait(ctx context.Context, rev int64, wait time.Duration) (*xdsserver.SyncReport, error) {
	q := url.Values{"revision": {strconv.FormatInt(rev, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out xdsserver.SyncReport
	return &out, c.do(ctx, http.MethodGet, "/api/v1/sync?"+q.Encode(), nil, &out)
}

// SyncCurrent reports whether every proxy has ACKed the config and the
// registry as they are now: every service and endpoint that exists.
func (c *Client) SyncCurrent(ctx context.Context) (*xdsserver.SyncReport, error) {
	var out xdsserver.SyncReport
	return &out, c.do(ctx, http.MethodGet, "/api/v1/sync?current=true", nil, &out)
}

// Ready reports whether the control plane answers.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/ready", nil, nil)
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error  string        `json:"error"`
	Errors []ConfigError `json:"errors,omitempty"`
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("cannot reach the control plane at %s: is it running? (%v)", c.Base, op.Err)
		}
		return fmt.Errorf("control plane at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.Base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		if json.Unmarshal(b, &ae) == nil {
			if len(ae.Errors) > 0 {
				return &InvalidError{Errors: ae.Errors}
			}
			if ae.Error != "" {
				return errors.New(ae.Error)
			}
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer from %s: %w", c.Base+path, err)
	}
	return nil
}
