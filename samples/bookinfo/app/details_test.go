package app

import (
	"net/http"
	"testing"
)

func TestDetailsAndRatings(t *testing.T) {
	details := NewDetails(DetailsOptions{})
	ratings := NewRatings(RatingsOptions{})
	tests := []struct {
		name       string
		handler    http.Handler
		path       string
		wantStatus int
		wantBody   string
	}{
		{"details", details, "/details/0", 200,
			`{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`},
		{"details other id", details, "/details/7", 200,
			`{"id":7,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`},
		{"details bad id", details, "/details/abc", 400, `{"error":"please provide numeric product id"}`},
		{"details health", details, "/health", 200, `{"status":"Details is healthy"}`},
		{"ratings", ratings, "/ratings/0", 200, `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`},
		{"ratings other id", ratings, "/ratings/3", 200, `{"id":3,"ratings":{"Reviewer1":5,"Reviewer2":4}}`},
		{"ratings bad id", ratings, "/ratings/x1", 400, `{"error":"please provide numeric product ID"}`},
		{"ratings health", ratings, "/health", 200, `{"status":"Ratings is healthy"}`},
		{"ratings unknown path", ratings, "/nope", 404, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, tt.handler, "GET", tt.path, nil, "")
			body := readBody(t, resp)
			if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %s, want %d %s", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus != 404 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
			}
		})
	}
}
