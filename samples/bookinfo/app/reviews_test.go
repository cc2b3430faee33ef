package app

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	review1     = `{"reviewer":"Reviewer1","text":"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"`
	review2     = `{"reviewer":"Reviewer2","text":"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."`
	ratingsOK   = `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`
	unavailable = `"rating":{"error":"Ratings service is currently unavailable"}}`
)

func boolPtr(b bool) *bool { return &b }

func TestReviewsVersions(t *testing.T) {
	tests := []struct {
		name     string
		opts     ReviewsOptions
		ratings  http.Handler // nil: ratings is unreachable
		path     string
		wantBody string
		wantCall bool // whether ratings is called
	}{
		{
			name:     "v1 has no ratings",
			opts:     ReviewsOptions{Version: "v1"},
			ratings:  fixed(200, ratingsOK),
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `},` + review2 + `}]}`,
		},
		{
			name:     "empty version is v1",
			opts:     ReviewsOptions{},
			ratings:  fixed(200, ratingsOK),
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `},` + review2 + `}]}`,
		},
		{
			name:    "v2 black stars",
			opts:    ReviewsOptions{Version: "v2"},
			ratings: fixed(200, ratingsOK),
			path:    "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` +
				review1 + `,"rating":{"stars":5,"color":"black"}},` + review2 + `,"rating":{"stars":4,"color":"black"}}]}`,
			wantCall: true,
		},
		{
			name:    "v3 red stars, id echoed as a string",
			opts:    ReviewsOptions{Version: "v3", ClusterName: "east"},
			ratings: fixed(200, `{"id":12,"ratings":{"Reviewer1":2,"Reviewer2":1}}`),
			path:    "/reviews/12",
			wantBody: `{"id":"12","podname":"reviews-pod","clustername":"east","reviews":[` +
				review1 + `,"rating":{"stars":2,"color":"red"}},` + review2 + `,"rating":{"stars":1,"color":"red"}}]}`,
			wantCall: true,
		},
		{
			name:    "star color and ratings switch can be overridden",
			opts:    ReviewsOptions{Version: "v1", EnableRatings: boolPtr(true), StarColor: "blue"},
			ratings: fixed(200, ratingsOK),
			path:    "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` +
				review1 + `,"rating":{"stars":5,"color":"blue"}},` + review2 + `,"rating":{"stars":4,"color":"blue"}}]}`,
			wantCall: true,
		},
		{
			name:     "v2 with ratings disabled",
			opts:     ReviewsOptions{Version: "v2", EnableRatings: boolPtr(false)},
			ratings:  fixed(200, ratingsOK),
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `},` + review2 + `}]}`,
		},
		{
			name:     "ratings answers 500",
			opts:     ReviewsOptions{Version: "v2"},
			ratings:  fixed(500, `{"error":"boom"}`),
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `,` + unavailable + `,` + review2 + `,` + unavailable + `]}`,
			wantCall: true,
		},
		{
			name:     "ratings answers garbage",
			opts:     ReviewsOptions{Version: "v3"},
			ratings:  fixed(200, `not json`),
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `,` + unavailable + `,` + review2 + `,` + unavailable + `]}`,
			wantCall: true,
		},
		{
			name:     "ratings unreachable",
			opts:     ReviewsOptions{Version: "v3"},
			path:     "/reviews/0",
			wantBody: `{"id":"0","podname":"reviews-pod","clustername":"null","reviews":[` + review1 + `,` + unavailable + `,` + review2 + `,` + unavailable + `]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.PodName = "reviews-pod"
			var rec *recorder
			if tt.ratings != nil {
				rec = newRecorder(t, tt.ratings)
				opts.RatingsURL = rec.URL
			} else {
				rec = newRecorder(t, fixed(200, ratingsOK))
				opts.RatingsURL = rec.URL
				rec.Close() // nothing listens there any more
			}
			h, err := NewReviews(opts)
			if err != nil {
				t.Fatal(err)
			}
			resp := do(t, h, "GET", tt.path, nil, "")
			if body := readBody(t, resp); resp.StatusCode != 200 || body != tt.wantBody {
				t.Errorf("GET %s = %d\n%s\nwant 200\n%s", tt.path, resp.StatusCode, body, tt.wantBody)
			}
			reqs := rec.requests()
			if called := len(reqs) > 0; called != tt.wantCall {
				t.Errorf("ratings called = %v, want %v", called, tt.wantCall)
			}
			if len(reqs) > 0 {
				if want := "/ratings/" + strings.TrimPrefix(tt.path, "/reviews/"); reqs[0].URL.Path != want {
					t.Errorf("ratings path = %s, want %s", reqs[0].URL.Path, want)
				}
			}
		})
	}
}

func TestReviewsRatingsTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	h, err := NewReviews(ReviewsOptions{Version: "v3", RatingsURL: slow.URL, RatingsTimeout: 50 * time.Millisecond, PodName: "p"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	body := readBody(t, do(t, h, "GET", "/reviews/0", nil, ""))
	if !strings.Contains(body, unavailable) {
		t.Errorf("body = %s, want the ratings error", body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("reviews waited %v for a slow ratings service, want about the 50ms timeout", d)
	}
}

func TestReviewsDefaultTimeouts(t *testing.T) {
	for version, want := range map[string]time.Duration{"v2": 10 * time.Second, "v3": 2500 * time.Millisecond} {
		rv, err := newReviews(ReviewsOptions{Version: version})
		if err != nil {
			t.Fatal(err)
		}
		if got := rv.ratingsTimeout; got != want {
			t.Errorf("%s ratings timeout = %v, want %v", version, got, want)
		}
	}
}

func TestReviewsForwardsHeaders(t *testing.T) {
	rec := newRecorder(t, fixed(200, ratingsOK))
	h, err := NewReviews(ReviewsOptions{Version: "v2", RatingsURL: rec.URL})
	if err != nil {
		t.Fatal(err)
	}
	in := tracingHeaders()
	in.Set("end-user", "jason")
	in.Set("X-Private", "secret")
	do(t, h, "GET", "/reviews/0", in, "")
	got := rec.last(t).Header
	checkForwarded(t, got, in)
	if got.Get("end-user") != "jason" {
		t.Errorf("ratings got end-user %q, want jason", got.Get("end-user"))
	}
	if got.Get("X-Private") != "" {
		t.Errorf("header X-Private was forwarded to ratings")
	}
}

func TestReviewsHealthAndErrors(t *testing.T) {
	h, err := NewReviews(ReviewsOptions{Version: "v1", PodName: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, do(t, h, "GET", "/health", nil, "")); body != `{"status":"Reviews is healthy"}` {
		t.Errorf("health = %s", body)
	}
	if resp := do(t, h, "GET", "/reviews/abc", nil, ""); resp.StatusCode != 400 {
		t.Errorf("GET /reviews/abc = %d, want 400", resp.StatusCode)
	}
	if _, err := NewReviews(ReviewsOptions{Version: "v4"}); err == nil || !strings.Contains(err.Error(), `"v4"`) {
		t.Errorf("NewReviews(v4) error = %v, want one naming the version", err)
	}
}

func TestReviewsOptionsFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    ReviewsOptions
		wantErr string
	}{
		{
			name: "defaults",
			env:  map[string]string{"HOSTNAME": "host-1"},
			want: ReviewsOptions{PodName: "host-1", RatingsURL: "http://ratings:9080"},
		},
		{
			name: "everything set",
			env: map[string]string{
				"SERVICE_VERSION": "v3", "ENABLE_RATINGS": "false", "STAR_COLOR": "green",
				"POD_NAME": "reviews-v3-x", "HOSTNAME": "ignored", "CLUSTER_NAME": "c1",
				"SERVICES_DOMAIN": ".default.svc.cluster.local",
			},
			want: ReviewsOptions{
				Version: "v3", EnableRatings: boolPtr(false), StarColor: "green", PodName: "reviews-v3-x",
				ClusterName: "c1", ServicesDomain: ".default.svc.cluster.local",
				RatingsURL: "http://ratings.default.svc.cluster.local:9080",
			},
		},
		{
			name: "Istio style domain and ratings host and port",
			env: map[string]string{
				"SERVICES_DOMAIN": "default.svc.cluster.local", "RATINGS_HOSTNAME": "stars", "RATINGS_SERVICE_PORT": "9999",
			},
			want: ReviewsOptions{
				ServicesDomain: "default.svc.cluster.local",
				RatingsURL:     "http://stars.default.svc.cluster.local:9999",
			},
		},
		{name: "bad ENABLE_RATINGS", env: map[string]string{"ENABLE_RATINGS": "maybe"}, wantErr: "ENABLE_RATINGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReviewsOptionsFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one mentioning %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.EnableRatings == nil) != (tt.want.EnableRatings == nil) ||
				(got.EnableRatings != nil && *got.EnableRatings != *tt.want.EnableRatings) {
				t.Errorf("EnableRatings = %v, want %v", got.EnableRatings, tt.want.EnableRatings)
			}
			got.EnableRatings, tt.want.EnableRatings = nil, nil
			if got != tt.want {
				t.Errorf("options = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
