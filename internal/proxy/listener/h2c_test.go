package listener

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestH2CConnectionOutlivesTheIdleTimeout: the lean HTTP/1.x server sets a
// read deadline while it waits for a request, and hands a connection that
// starts with the HTTP/2 preface to the socket's http.Server; a connection
// that is used all the time must not end when that deadline passes.
func TestH2CConnectionOutlivesTheIdleTimeout(t *testing.T) {
	const idle = 600 * time.Millisecond
	_, addr := servingWith(t, Options{IdleTimeout: idle}, testHandler)
	var dials atomic.Int32
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	start := time.Now()
	for time.Since(start) < 3*idle {
		resp, err := c.Get("http://" + addr + "/a")
		if err != nil {
			t.Errorf("after %v: %v", time.Since(start), err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(idle / 6)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("a connection busy every %v was dialed %d times in %v (idle timeout %v)", idle/6, n, 3*idle, idle)
	}
}
