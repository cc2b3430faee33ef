package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrCh := make(chan net.Addr, 1)
	done := make(chan error, 1)
	env := map[string]string{"PORT": "1", "BIND_ADDR": "0.0.0.0"} // flags win over both
	go func() {
		done <- Run(ctx, RunOptions{
			Args:      []string{"ratings", "--port", "0", "--addr", "127.0.0.1"},
			Getenv:    func(k string) string { return env[k] },
			Listening: func(a net.Addr) { addrCh <- a },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-addrCh:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not start listening")
	}
	if !strings.HasPrefix(addr.String(), "127.0.0.1:") {
		t.Errorf("listening on %s, want 127.0.0.1", addr)
	}
	resp, err := http.Get("http://" + addr.String() + "/ratings/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"id":1,"ratings":{"Reviewer1":5,"Reviewer2":4}}` {
		t.Errorf("GET /ratings/1 = %s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after its context ended")
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no service", nil, nil, "usage: bookinfo"},
		{"unknown service", []string{"catalog"}, nil, `unknown service "catalog"`},
		{"unknown flag", []string{"details", "--verbose"}, nil, "-verbose"},
		{"stray argument", []string{"details", "extra"}, nil, `unexpected argument "extra"`},
		{"bad PORT", []string{"details"}, map[string]string{"PORT": "http"}, `PORT="http"`},
		{"port out of range", []string{"details", "--port", "70000"}, nil, "port 70000"},
		{"bad reviews version", []string{"reviews"}, map[string]string{"SERVICE_VERSION": "v9"}, `"v9"`},
		{"bad ENABLE_RATINGS", []string{"reviews"}, map[string]string{"ENABLE_RATINGS": "yes please"}, "ENABLE_RATINGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), RunOptions{Args: tt.args, Getenv: func(k string) string { return tt.env[k] }})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run(%v) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}
