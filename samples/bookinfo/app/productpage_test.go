package app

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	detailsOK        = `{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}`
	reviewsV1        = `{"id":"0","podname":"reviews-v1-abc","clustername":"null","reviews":[{"reviewer":"Reviewer1","text":"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},{"reviewer":"Reviewer2","text":"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."}]}`
	reviewsV2        = `{"id": "0","podname": "reviews-v2-abc","clustername": "null","reviews": [{"reviewer": "Reviewer1","text": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!","rating": {"stars": 5,"color": "black"}},{"reviewer": "Reviewer2","text": "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.","rating": {"stars": 4,"color": "black"}}]}`
	reviewsV3        = `{"id":"0","podname":"reviews-v3-abc","clustername":"null","reviews":[{"reviewer":"Reviewer1","text":"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!","rating":{"stars":5,"color":"red"}},{"reviewer":"Reviewer2","text":"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.","rating":{"stars":4,"color":"red"}}]}`
	reviewsNoRatings = `{"id":"0","podname":"reviews-v2-abc","clustername":"null","reviews":[{"reviewer":"Reviewer1","text":"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!","rating":{"error":"Ratings service is currently unavailable"}},{"reviewer":"Reviewer2","text":"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.","rating":{"error":"Ratings service is currently unavailable"}}]}`
)

// bookinfo is a productpage wired to recording upstreams.
type bookinfo struct {
	page                      http.Handler
	details, reviews, ratings *recorder
}

func newBookinfo(t *testing.T, details, reviews, ratings http.Handler) *bookinfo {
	t.Helper()
	b := &bookinfo{
		details: newRecorder(t, details),
		reviews: newRecorder(t, reviews),
		ratings: newRecorder(t, ratings),
	}
	b.page = NewProductPage(ProductPageOptions{
		DetailsURL: b.details.URL,
		ReviewsURL: b.reviews.URL + "/",
		RatingsURL: b.ratings.URL,
		Timeout:    time.Second,
	})
	return b
}

func TestProductPageAPI(t *testing.T) {
	tests := []struct {
		name                      string
		details, reviews, ratings http.Handler
		path                      string
		wantStatus                int
		wantBody                  string
	}{
		{
			name: "products", path: "/api/v1/products", wantStatus: 200,
			wantBody: `[{"id":0,"title":"The Comedy of Errors","descriptionHtml":"<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play."}]`,
		},
		{name: "details", details: fixed(200, detailsOK), path: "/api/v1/products/0", wantStatus: 200, wantBody: detailsOK},
		{name: "reviews exactly as received", reviews: fixed(200, reviewsV2), path: "/api/v1/products/0/reviews", wantStatus: 200, wantBody: reviewsV2},
		{name: "ratings", ratings: fixed(200, ratingsOK), path: "/api/v1/products/0/ratings", wantStatus: 200, wantBody: ratingsOK},
		{
			name: "details down", details: fixed(503, "no healthy upstream"), path: "/api/v1/products/0", wantStatus: 503,
			wantBody: `{"error":"Sorry, product details are currently unavailable for this book."}`,
		},
		{
			name: "reviews down", reviews: fixed(500, "{}"), path: "/api/v1/products/0/reviews", wantStatus: 503,
			wantBody: `{"error":"Sorry, product reviews are currently unavailable for this book."}`,
		},
		{
			name: "ratings not found", ratings: fixed(404, "{}"), path: "/api/v1/products/0/ratings", wantStatus: 503,
			wantBody: `{"error":"Sorry, product ratings are currently unavailable for this book."}`,
		},
		{
			name: "reviews answers non-JSON", reviews: fixed(200, "<html>"), path: "/api/v1/products/0/reviews", wantStatus: 503,
			wantBody: `{"error":"Sorry, product reviews are currently unavailable for this book."}`,
		},
		{name: "bad id", path: "/api/v1/products/zero", wantStatus: 400, wantBody: `{"error":"please provide numeric product ID"}`},
		{name: "health", path: "/health", wantStatus: 200, wantBody: `{"status":"Productpage is healthy"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unused := fixed(500, `{"error":"unexpected call"}`)
			for _, h := range []*http.Handler{&tt.details, &tt.reviews, &tt.ratings} {
				if *h == nil {
					*h = unused
				}
			}
			b := newBookinfo(t, tt.details, tt.reviews, tt.ratings)
			resp := do(t, b.page, "GET", tt.path, nil, "")
			body := readBody(t, resp)
			if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %s\nwant %d %s", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}
}

func TestProductPageReviewsRetry(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int // answers of reviews, in order
		wantStatus   int
		wantAttempts int
	}{
		{"success", []int{200}, 200, 1},
		{"one 503 is retried", []int{503, 200}, 200, 2},
		{"two 500s fail", []int{500, 500, 200}, 503, 2},
		{"404 is not retried", []int{404, 200}, 503, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			reviews := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				fixed(tt.statuses[min(i, len(tt.statuses)-1)], reviewsV1).ServeHTTP(w, r)
			})
			b := newBookinfo(t, fixed(200, detailsOK), reviews, fixed(200, ratingsOK))
			resp := do(t, b.page, "GET", "/api/v1/products/0/reviews", nil, "")
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := len(b.reviews.requests()); got != tt.wantAttempts {
				t.Errorf("reviews called %d times, want %d", got, tt.wantAttempts)
			}
		})
	}
}

func TestProductPageTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	b := &bookinfo{details: newRecorder(t, fixed(200, detailsOK)), reviews: newRecorder(t, slow)}
	page := NewProductPage(ProductPageOptions{DetailsURL: b.details.URL, ReviewsURL: b.reviews.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	resp := do(t, page, "GET", "/productpage", nil, "")
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, ReviewsUnavailable) {
		t.Errorf("status %d, page without %q", resp.StatusCode, ReviewsUnavailable)
	}
	if got := len(b.reviews.requests()); got != 2 {
		t.Errorf("reviews called %d times, want 2 (one retry after a timeout)", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("page took %v, want about two 50ms timeouts", d)
	}
}

func TestProductPageHTML(t *testing.T) {
	tests := []struct {
		name             string
		details, reviews http.Handler
		want, notWant    []string
	}{
		{
			name: "v1 without stars", details: fixed(200, detailsOK), reviews: fixed(200, reviewsV1),
			want: []string{
				"<title>Simple Bookstore App</title>", "The Comedy of Errors", "Wikipedia Summary",
				"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
				"Reviewer2", "PublisherA", "123-1234567890", "reviews-v1-abc", "<code>v1</code>",
			},
			notWant: []string{"★", "☆", "currently unavailable"},
		},
		{
			name: "v2 black stars", details: fixed(200, detailsOK), reviews: fixed(200, reviewsV2),
			want: []string{
				`style="color: black"><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span></div>`,
				`style="color: black"><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star">★</span><span class="glyphicon glyphicon-star-empty">☆</span></div>`,
				"reviews-v2-abc", "<code>v2</code>",
			},
			notWant: []string{"color: red"},
		},
		{
			name: "v3 red stars", details: fixed(200, detailsOK), reviews: fixed(200, reviewsV3),
			want:    []string{`style="color: red"><span class="glyphicon glyphicon-star">★`, "reviews-v3-abc", "<code>v3</code>"},
			notWant: []string{"color: black"},
		},
		{
			name: "ratings unavailable", details: fixed(200, detailsOK), reviews: fixed(200, reviewsNoRatings),
			want:    []string{"Ratings service is currently unavailable", "Reviewer1"},
			notWant: []string{"★"},
		},
		{
			name: "details and reviews down", details: fixed(500, "{}"), reviews: fixed(503, "{}"),
			want:    []string{DetailsUnavailable, ReviewsUnavailable, "The Comedy of Errors"},
			notWant: []string{"PublisherA", "Reviewer1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBookinfo(t, tt.details, tt.reviews, fixed(500, "{}"))
			resp := do(t, b.page, "GET", "/productpage", nil, "")
			body := readBody(t, resp)
			if resp.StatusCode != 200 {
				t.Errorf("status = %d, want 200", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type = %q", ct)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(body, nw) {
					t.Errorf("page contains %q", nw)
				}
			}
			if len(b.ratings.requests()) != 0 {
				t.Errorf("the product page called ratings directly")
			}
		})
	}
}

func TestHostileStarColorIsNotRendered(t *testing.T) {
	hostile := strings.ReplaceAll(reviewsV2, `"color": "black"`, `"color": "red;background:url(x)"`)
	b := newBookinfo(t, fixed(200, detailsOK), fixed(200, hostile), fixed(200, ratingsOK))
	body := readBody(t, do(t, b.page, "GET", "/productpage", nil, ""))
	if strings.Contains(body, "url(") || !strings.Contains(body, `style="color: black"`) {
		t.Errorf("unsafe star color reached the page")
	}
}

func TestIndexPage(t *testing.T) {
	b := newBookinfo(t, fixed(200, detailsOK), fixed(200, reviewsV1), fixed(200, ratingsOK))
	resp := do(t, b.page, "GET", "/", nil, "")
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/productpage"`) || !strings.Contains(body, "<title>Simple Bookstore App</title>") {
		t.Errorf("GET / = %d, want a page linking /productpage:\n%s", resp.StatusCode, body)
	}
	if resp := do(t, b.page, "GET", "/nothing-here", nil, ""); resp.StatusCode != 404 {
		t.Errorf("GET /nothing-here = %d, want 404", resp.StatusCode)
	}
}

func TestLoginSendsEndUser(t *testing.T) {
	b := newBookinfo(t, fixed(200, detailsOK), fixed(200, reviewsV2), fixed(200, ratingsOK))

	form := url.Values{"username": {"jason"}}.Encode()
	resp := do(t, b.page, "POST", "/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/productpage" {
		t.Fatalf("POST /login = %d Location %q, want 302 to /productpage", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			session = c
		}
	}
	if session == nil || session.Value != "jason" || session.Path != "/" {
		t.Fatalf("login cookie = %v, want session=jason; Path=/", session)
	}

	// The browser sends the cookie back.
	cookie := http.Header{"Cookie": {session.Name + "=" + session.Value}}
	body := readBody(t, do(t, b.page, "GET", "/productpage", cookie, ""))
	if got := b.reviews.last(t).Header.Get("end-user"); got != "jason" {
		t.Errorf("reviews got end-user %q, want jason", got)
	}
	if got := b.details.last(t).Header.Get("end-user"); got != "jason" {
		t.Errorf("details got end-user %q, want jason", got)
	}
	if !strings.Contains(body, "<b>jason</b>") || !strings.Contains(body, `href="/logout"`) {
		t.Errorf("the page does not show jason as signed in with a Sign out link")
	}
	do(t, b.page, "GET", "/api/v1/products/0/ratings", cookie, "")
	if got := b.ratings.last(t).Header.Get("end-user"); got != "jason" {
		t.Errorf("ratings got end-user %q, want jason", got)
	}

	// Signed out: no end-user, and a sign-in form.
	resp = do(t, b.page, "GET", "/logout", cookie, "")
	if resp.StatusCode != http.StatusFound {
		t.Errorf("GET /logout = %d, want 302", resp.StatusCode)
	}
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.Name == "session" && c.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("logout did not clear the session cookie: %v", resp.Header["Set-Cookie"])
	}
	body = readBody(t, do(t, b.page, "GET", "/productpage", nil, ""))
	if got := b.reviews.last(t).Header.Get("end-user"); got != "" {
		t.Errorf("signed-out request sent end-user %q", got)
	}
	if !strings.Contains(body, `action="/login"`) || !strings.Contains(body, `name="username"`) {
		t.Errorf("signed-out page has no sign-in form")
	}
}

func TestLoginRejectsBadNames(t *testing.T) {
	b := newBookinfo(t, fixed(200, detailsOK), fixed(200, reviewsV1), fixed(200, ratingsOK))
	for _, name := range []string{"", "   ", "a\r\nx-injected: 1", strings.Repeat("n", 65)} {
		form := url.Values{"username": {name}}.Encode()
		resp := do(t, b.page, "POST", "/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form)
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
			t.Errorf("login %q = %d with cookies %v, want 400 and no cookie", name, resp.StatusCode, resp.Cookies())
		}
	}
	// A forged cookie with a control character is ignored, not forwarded.
	do(t, b.page, "GET", "/productpage", http.Header{"Cookie": {"session=a%0Ab"}}, "")
	if got := b.reviews.last(t).Header.Get("end-user"); got != "" {
		t.Errorf("end-user %q forwarded from a forged cookie", got)
	}
}

func TestProductPagePropagatesHeaders(t *testing.T) {
	b := newBookinfo(t, fixed(200, detailsOK), fixed(200, reviewsV1), fixed(200, ratingsOK))
	in := tracingHeaders()
	in.Set("end-user", "incoming-user")
	in.Set("Authorization", "Bearer secret")
	do(t, b.page, "GET", "/productpage", in, "")
	for name, up := range map[string]*recorder{"details": b.details, "reviews": b.reviews} {
		got := up.last(t).Header
		checkForwarded(t, got, in)
		if got.Get("end-user") != "incoming-user" || got.Get("traceparent") != "value-of-traceparent" {
			t.Errorf("%s got end-user %q traceparent %q", name, got.Get("end-user"), got.Get("traceparent"))
		}
		if got.Get("Authorization") != "" {
			t.Errorf("%s received the Authorization header", name)
		}
	}

	// A signed-in user wins over an incoming end-user header.
	in.Set("Cookie", "session=jason")
	do(t, b.page, "GET", "/api/v1/products/0/reviews", in, "")
	if got := b.reviews.last(t).Header.Get("end-user"); got != "jason" {
		t.Errorf("end-user = %q, want the signed-in jason", got)
	}
	if got := b.reviews.last(t).Header.Get("x-b3-traceid"); got != "value-of-x-b3-traceid" {
		t.Errorf("x-b3-traceid = %q on the API path", got)
	}
}

// In Weft's local mode services reach each other through the sidecar named
// by HTTP_PROXY: the request goes to the proxy with the service's URL, and
// the host (reviews:9080) selects the route.
func TestUpstreamCallsGoThroughProxy(t *testing.T) {
	sidecar := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Host {
		case "details.default.svc.cluster.local:9080":
			fixed(200, detailsOK).ServeHTTP(w, r)
		case "reviews.default.svc.cluster.local:9080":
			fixed(200, reviewsV3).ServeHTTP(w, r)
		default:
			fixed(404, "{}").ServeHTTP(w, r)
		}
	}))
	proxyURL, err := url.Parse(sidecar.URL)
	if err != nil {
		t.Fatal(err)
	}
	page := NewProductPage(ProductPageOptions{
		ServicesDomain: "default.svc.cluster.local",
		Transport:      NewTransport(http.ProxyURL(proxyURL)),
	})
	body := readBody(t, do(t, page, "GET", "/productpage", nil, ""))
	if !strings.Contains(body, "reviews-v3-abc") || !strings.Contains(body, "PublisherA") {
		t.Errorf("page did not show details and reviews fetched through the proxy")
	}
	var urls []string
	for _, r := range sidecar.requests() {
		urls = append(urls, r.RequestURI)
	}
	for _, want := range []string{
		"http://details.default.svc.cluster.local:9080/details/0",
		"http://reviews.default.svc.cluster.local:9080/reviews/0",
	} {
		found := false
		for _, u := range urls {
			found = found || u == want
		}
		if !found {
			t.Errorf("proxy saw %v, want a request for %s", urls, want)
		}
	}
}

// TestDefaultTransportHonoursHTTPProxy runs productpage with default options
// in a child process whose environment sets HTTP_PROXY (the environment is
// read once per process), and checks that its upstream call reaches the
// proxy.
func TestDefaultTransportHonoursHTTPProxy(t *testing.T) {
	if os.Getenv("BOOKINFO_PROXY_CHILD") == "1" {
		page := NewProductPage(ProductPageOptions{})
		resp := do(t, page, "GET", "/api/v1/products/0", nil, "")
		fmt.Printf("child status %d\n", resp.StatusCode)
		return
	}
	sidecar := newRecorder(t, fixed(200, detailsOK))
	cmd := exec.Command(os.Args[0], "-test.run=^TestDefaultTransportHonoursHTTPProxy$")
	cmd.Env = append(os.Environ(), "BOOKINFO_PROXY_CHILD=1", "HTTP_PROXY="+sidecar.URL, "http_proxy="+sidecar.URL, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "child status 200") {
		t.Errorf("child output:\n%s", out)
	}
	if got := sidecar.last(t).RequestURI; got != "http://details:9080/details/0" {
		t.Errorf("proxy saw %q, want http://details:9080/details/0", got)
	}
}
