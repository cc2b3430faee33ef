package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzProductPageReviews feeds arbitrary reviews answers (untrusted input
// from the mesh) to the product page: it must always render the page, and
// nothing in the answer may inject markup.
func FuzzProductPageReviews(f *testing.F) {
	for _, seed := range []string{reviewsV1, reviewsV2, reviewsV3, reviewsNoRatings, `{}`, `[]`, `null`, ``} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, reviewsBody string) {
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			body := detailsOK
			if strings.HasPrefix(r.URL.Path, "/reviews/") {
				body = reviewsBody
			}
			return &http.Response{
				StatusCode: 200,
				Header:     http.Header{"Content-Type": {"application/json"}},
				Body:       io.NopCloser(strings.NewReader(body)),
				Request:    r,
			}, nil
		})
		page := NewProductPage(ProductPageOptions{Transport: rt})
		resp := do(t, page, "GET", "/productpage", nil, "")
		body := readBody(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d for reviews %q", resp.StatusCode, reviewsBody)
		}
		if strings.Contains(strings.ToLower(body), "<script") {
			t.Fatalf("reviews %q injected a script", reviewsBody)
		}
	})
}
