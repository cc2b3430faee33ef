package rawhttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestContentLength(t *testing.T) {
	for head, want := range map[string]int{
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n":    12,
		"POST / HTTP/1.1\r\ncontent-length:  7 \r\nX: y\r\n":      7,
		"GET / HTTP/1.1\r\nHost: h\r\n":                           0,
		"POST / HTTP/1.1\r\nContent-Length: x1\r\n":               -1,
		"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2": 2,
	} {
		if got := ContentLength([]byte(head)); got != want {
			t.Errorf("ContentLength(%q) = %d, want %d", head, got, want)
		}
	}
}

// TestBackend sends requests with and without bodies on one connection:
// each gets the fixed answer, in order.
func TestBackend(t *testing.T) {
	addr := Backend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(c)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.EqualFold(string(b), "ok") {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, b)
		}
	}
}
