package app

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Error texts productpage shows, as in Istio's Bookinfo.
const (
	DetailsUnavailable        = "Sorry, product details are currently unavailable for this book."
	ReviewsUnavailable        = "Sorry, product reviews are currently unavailable for this book."
	RatingsUnavailableForBook = "Sorry, product ratings are currently unavailable for this book."
)

// SessionCookie is the cookie that holds the signed-in user name.
const SessionCookie = "session"

// maxUserLen bounds the length of a user name.
const maxUserLen = 64

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// Product is one entry of GET /api/v1/products.
type Product struct {
	ID              int           `json:"id"`
	Title           string        `json:"title"`
	DescriptionHTML template.HTML `json:"descriptionHtml"`
}

var products = []Product{{
	ID:    0,
	Title: "The Comedy of Errors",
	DescriptionHTML: `<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: ` +
		`The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his ` +
		`most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, ` +
		`in addition to puns and word play.`,
}}

// ProductPageOptions configures the productpage service.
type ProductPageOptions struct {
	// Logger receives one line per request and upstream failures; nil
	// discards.
	Logger *slog.Logger
	// ServicesDomain is appended to service names, e.g.
	// ".default.svc.cluster.local"; the leading dot may be left out, as
	// Istio's images expect.
	ServicesDomain string
	// DetailsURL, ReviewsURL and RatingsURL are the base URLs of the
	// upstream services; empty means "http://NAME" + ServicesDomain + ":9080".
	DetailsURL, ReviewsURL, RatingsURL string
	// Timeout bounds each upstream call (each attempt for reviews); zero
	// means 3s.
	Timeout time.Duration
	// Transport carries upstream calls; nil means a shared keep-alive
	// transport that honours HTTP_PROXY.
	Transport http.RoundTripper
}

type productPage struct {
	log                                *slog.Logger
	detailsURL, reviewsURL, ratingsURL string
	timeout                            time.Duration
	transport                          http.RoundTripper
}

// NewProductPage returns the productpage service: the HTML pages / and
// /productpage, the JSON API under /api/v1/products, /login, /logout and
// /health.
func NewProductPage(opts ProductPageOptions) http.Handler {
	pp := &productPage{
		log:        loggerOrDiscard(opts.Logger),
		detailsURL: strings.TrimSuffix(opts.DetailsURL, "/"),
		reviewsURL: strings.TrimSuffix(opts.ReviewsURL, "/"),
		ratingsURL: strings.TrimSuffix(opts.RatingsURL, "/"),
		timeout:    opts.Timeout,
		transport:  transportOrDefault(opts.Transport),
	}
	if pp.detailsURL == "" {
		pp.detailsURL = serviceURL("details", opts.ServicesDomain)
	}
	if pp.reviewsURL == "" {
		pp.reviewsURL = serviceURL("reviews", opts.ServicesDomain)
	}
	if pp.ratingsURL == "" {
		pp.ratingsURL = serviceURL("ratings", opts.ServicesDomain)
	}
	if pp.timeout == 0 {
		pp.timeout = 3 * time.Second
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", pp.serveIndex)
	mux.HandleFunc("GET /productpage", pp.serveProductPage)
	mux.HandleFunc("POST /login", pp.serveLogin)
	mux.HandleFunc("GET /logout", pp.serveLogout)
	mux.HandleFunc("GET /health", healthHandler("Productpage"))
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, products)
	})
	mux.HandleFunc("GET /api/v1/products/{id}", pp.apiProxy(pp.details, DetailsUnavailable))
	mux.HandleFunc("GET /api/v1/products/{id}/reviews", pp.apiProxy(pp.reviews, ReviewsUnavailable))
	mux.HandleFunc("GET /api/v1/products/{id}/ratings", pp.apiProxy(pp.ratings, RatingsUnavailableForBook))
	return logRequests(opts.Logger, "productpage", mux)
}

// upstreamHeaders are the headers productpage sends upstream: the
// propagated headers of r, and end-user for a signed-in user.
func upstreamHeaders(r *http.Request) http.Header {
	h := http.Header{}
	forwardHeaders(r.Header, h)
	if user := sessionUser(r); user != "" {
		h.Set("end-user", user)
	}
	return h
}

func (pp *productPage) details(ctx context.Context, h http.Header, id int) ([]byte, error) {
	return getJSON(ctx, pp.transport, pp.detailsURL+"/details/"+strconv.Itoa(id), h, pp.timeout)
}

// reviews calls reviews up to twice: a transport error or 5xx answer is
// retried once, as Istio's productpage does.
func (pp *productPage) reviews(ctx context.Context, h http.Header, id int) ([]byte, error) {
	u := pp.reviewsURL + "/reviews/" + strconv.Itoa(id)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var body []byte
		body, err = getJSON(ctx, pp.transport, u, h, pp.timeout)
		if err == nil {
			return body, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func (pp *productPage) ratings(ctx context.Context, h http.Header, id int) ([]byte, error) {
	return getJSON(ctx, pp.transport, pp.ratingsURL+"/ratings/"+strconv.Itoa(id), h, pp.timeout)
}

type fetchFunc func(ctx context.Context, h http.Header, id int) ([]byte, error)

// apiProxy answers with the upstream JSON as received, or 503 and an error.
func (pp *productPage) apiProxy(fetch fetchFunc, unavailable string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "please provide numeric product ID"})
			return
		}
		body, err := fetch(r.Context(), upstreamHeaders(r), id)
		if err == nil && !json.Valid(body) {
			err = fmt.Errorf("upstream answered invalid JSON")
		}
		if err != nil {
			pp.log.Warn("upstream unavailable", "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: unavailable})
			return
		}
		writeRawJSON(w, http.StatusOK, body)
	}
}

func (pp *productPage) serveIndex(w http.ResponseWriter, r *http.Request) {
	pp.render(w, "index.html", struct{ User string }{User: sessionUser(r)})
}

// pageData is what productpage.html renders.
type pageData struct {
	User           string
	Product        Product
	Details        *Details
	DetailsError   string
	Reviews        []reviewView
	ReviewsError   string
	PodName        string
	ClusterName    string
	ReviewsVersion string
}

type reviewView struct {
	Reviewer    string
	Text        string
	HasRating   bool
	Filled      []struct{}
	Empty       []struct{}
	Color       string
	RatingError string
}

func (pp *productPage) serveProductPage(w http.ResponseWriter, r *http.Request) {
	product := products[0]
	h := upstreamHeaders(r)
	data := pageData{User: sessionUser(r), Product: product}

	// Details and reviews are independent: fetch them concurrently.
	type result struct {
		body []byte
		err  error
	}
	detailsCh := make(chan result, 1)
	go func() {
		b, err := pp.details(r.Context(), h, product.ID)
		detailsCh <- result{b, err}
	}()
	rb, rerr := pp.reviews(r.Context(), h, product.ID)
	dres := <-detailsCh

	if err := decodeUpstream(dres.body, dres.err, &data.Details); err != nil {
		pp.log.Warn("details unavailable", "err", err)
		data.DetailsError = DetailsUnavailable
	}
	var rv ReviewsResponse
	if err := decodeUpstream(rb, rerr, &rv); err != nil {
		pp.log.Warn("reviews unavailable", "err", err)
		data.ReviewsError = ReviewsUnavailable
	} else {
		data.Reviews, data.ReviewsVersion = reviewViews(rv.Reviews)
		data.PodName = rv.PodName
		if rv.ClusterName != "null" {
			data.ClusterName = rv.ClusterName
		}
	}
	pp.render(w, "productpage.html", data)
}

func decodeUpstream(body []byte, err error, v any) error {
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode upstream answer: %w", err)
	}
	return nil
}

// safeColor accepts CSS color names and hex colors; anything else is black.
var safeColor = regexp.MustCompile(`^(?:[a-zA-Z]{1,20}|#[0-9a-fA-F]{3,8})$`)

// reviewViews prepares reviews for display and guesses the reviews version
// from them: no ratings is v1, black stars v2, red stars v3.
func reviewViews(reviews []Review) ([]reviewView, string) {
	views := make([]reviewView, 0, len(reviews))
	colors := map[string]bool{}
	rated := false
	for _, r := range reviews {
		v := reviewView{Reviewer: r.Reviewer, Text: r.Text}
		if r.Rating != nil {
			rated = true
			v.HasRating = true
			if r.Rating.Stars > 0 {
				n := min(r.Rating.Stars, 5)
				v.Filled = make([]struct{}, n)
				v.Empty = make([]struct{}, 5-n)
				v.Color = "black"
				if safeColor.MatchString(r.Rating.Color) {
					v.Color = r.Rating.Color
				}
				colors[v.Color] = true
			} else {
				v.RatingError = r.Rating.Error
				if v.RatingError == "" {
					v.RatingError = RatingsUnavailable
				}
			}
		}
		views = append(views, v)
	}
	version := ""
	switch {
	case len(reviews) > 0 && !rated:
		version = "v1"
	case len(colors) == 1 && colors["black"]:
		version = "v2"
	case len(colors) == 1 && colors["red"]:
		version = "v3"
	}
	return views, version
}

func (pp *productPage) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		pp.log.Error("render page", "template", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// validUser reports whether name can be a user name: 1-64 printable
// characters (it travels in a cookie and in the end-user header).
func validUser(name string) bool {
	if name == "" || len(name) > maxUserLen {
		return false
	}
	for _, c := range name {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// sessionUser is the signed-in user, or "".
func sessionUser(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	name, err := url.QueryUnescape(c.Value)
	if err != nil || !validUser(name) {
		return ""
	}
	return name
}

func (pp *productPage) serveLogin(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("username"))
	if !validUser(name) {
		http.Error(w, "sign in: the user name must be 1 to 64 printable characters", http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    url.QueryEscape(name),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/productpage", http.StatusFound)
}

func (pp *productPage) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/productpage", http.StatusFound)
}
