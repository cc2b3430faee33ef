package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// RatingsUnavailable is the error a review carries when reviews could not
// reach the ratings service.
const RatingsUnavailable = "Ratings service is currently unavailable"

// ReviewsOptions configures the reviews service. The zero value of every
// field except Version has a default that matches Istio's reviews images.
type ReviewsOptions struct {
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// Version is v1, v2 or v3; empty means v1.
	Version string
	// EnableRatings says whether reviews call ratings; nil means true for
	// v2 and v3 and false for v1.
	EnableRatings *bool
	// StarColor is the color of the stars; empty means black for v1 and v2
	// and red for v3.
	StarColor string
	// PodName is reported as "podname"; empty means os.Hostname().
	PodName string
	// ClusterName is reported as "clustername"; empty means "null".
	ClusterName string
	// ServicesDomain is appended to service names, e.g.
	// ".default.svc.cluster.local"; the leading dot may be left out, as
	// Istio's images expect.
	ServicesDomain string
	// RatingsURL is the base URL of the ratings service; empty means
	// "http://ratings" + ServicesDomain + ":9080".
	RatingsURL string
	// RatingsTimeout bounds a call to ratings; zero means 10s for v2 and
	// 2.5s for v3.
	RatingsTimeout time.Duration
	// Transport carries calls to ratings; nil means a shared keep-alive
	// transport that honours HTTP_PROXY.
	Transport http.RoundTripper
}

// ReviewsResponse is the JSON answer of GET /reviews/{id}.
type ReviewsResponse struct {
	ID          string   `json:"id"`
	PodName     string   `json:"podname"`
	ClusterName string   `json:"clustername"`
	Reviews     []Review `json:"reviews"`
}

// Review is one review; Rating is absent when ratings are disabled (v1).
type Review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *Rating `json:"rating,omitempty"`
}

// Rating is either stars with a color or an error.
type Rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

var bookReviews = []Review{
	{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

// ReviewsOptionsFromEnv reads SERVICE_VERSION, ENABLE_RATINGS, STAR_COLOR,
// POD_NAME (else HOSTNAME), CLUSTER_NAME, SERVICES_DOMAIN, RATINGS_HOSTNAME
// and RATINGS_SERVICE_PORT.
func ReviewsOptionsFromEnv(getenv func(string) string) (ReviewsOptions, error) {
	opts := ReviewsOptions{
		Version:        getenv("SERVICE_VERSION"),
		StarColor:      getenv("STAR_COLOR"),
		PodName:        getenv("POD_NAME"),
		ClusterName:    getenv("CLUSTER_NAME"),
		ServicesDomain: getenv("SERVICES_DOMAIN"),
		RatingsURL:     serviceURLFromEnv(getenv, "ratings"),
	}
	if opts.PodName == "" {
		opts.PodName = getenv("HOSTNAME")
	}
	if v := getenv("ENABLE_RATINGS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return ReviewsOptions{}, fmt.Errorf("ENABLE_RATINGS=%q: want true or false", v)
		}
		opts.EnableRatings = &b
	}
	return opts, nil
}

type reviews struct {
	version        string
	log            *slog.Logger
	enableRatings  bool
	starColor      string
	podName        string
	clusterName    string
	ratingsURL     string
	ratingsTimeout time.Duration
	transport      http.RoundTripper
}

// NewReviews returns the reviews service: GET /reviews/{id} and GET /health.
// It fails on an unknown version.
func NewReviews(opts ReviewsOptions) (http.Handler, error) {
	rv, err := newReviews(opts)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /reviews/{id}", rv.serveReviews)
	mux.HandleFunc("GET /health", healthHandler("Reviews"))
	return logRequests(opts.Logger, "reviews-"+rv.version, mux), nil
}

// newReviews resolves the defaults of opts.
func newReviews(opts ReviewsOptions) (*reviews, error) {
	version := opts.Version
	if version == "" {
		version = "v1"
	}
	rv := &reviews{
		version:        version,
		log:            loggerOrDiscard(opts.Logger),
		starColor:      opts.StarColor,
		podName:        opts.PodName,
		clusterName:    opts.ClusterName,
		ratingsURL:     strings.TrimSuffix(opts.RatingsURL, "/"),
		ratingsTimeout: opts.RatingsTimeout,
		transport:      transportOrDefault(opts.Transport),
	}
	var defaultColor string
	var defaultTimeout time.Duration
	switch version {
	case "v1":
		defaultColor, defaultTimeout = "black", 10*time.Second
	case "v2":
		rv.enableRatings = true
		defaultColor, defaultTimeout = "black", 10*time.Second
	case "v3":
		rv.enableRatings = true
		defaultColor, defaultTimeout = "red", 2500*time.Millisecond
	default:
		return nil, fmt.Errorf("reviews version %q: want v1, v2 or v3", version)
	}
	if opts.EnableRatings != nil {
		rv.enableRatings = *opts.EnableRatings
	}
	if rv.starColor == "" {
		rv.starColor = defaultColor
	}
	if rv.ratingsTimeout == 0 {
		rv.ratingsTimeout = defaultTimeout
	}
	if rv.podName == "" {
		rv.podName, _ = os.Hostname()
	}
	if rv.clusterName == "" {
		rv.clusterName = "null"
	}
	if rv.ratingsURL == "" {
		rv.ratingsURL = serviceURL("ratings", opts.ServicesDomain)
	}
	return rv, nil
}

func (rv *reviews) serveReviews(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "please provide numeric product ID"})
		return
	}
	resp := ReviewsResponse{
		ID:          strconv.Itoa(id),
		PodName:     rv.podName,
		ClusterName: rv.clusterName,
		Reviews:     make([]Review, len(bookReviews)),
	}
	copy(resp.Reviews, bookReviews)
	if rv.enableRatings {
		stars := rv.fetchRatings(r, id)
		for i := range resp.Reviews {
			if n, ok := stars[resp.Reviews[i].Reviewer]; ok {
				resp.Reviews[i].Rating = &Rating{Stars: n, Color: rv.starColor}
			} else {
				resp.Reviews[i].Rating = &Rating{Error: RatingsUnavailable}
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// fetchRatings asks ratings for the stars of product id; on failure it logs
// and returns nil, so every review carries the "unavailable" error.
func (rv *reviews) fetchRatings(r *http.Request, id int) map[string]int {
	header := http.Header{}
	forwardHeaders(r.Header, header)
	url := rv.ratingsURL + "/ratings/" + strconv.Itoa(id)
	body, err := getJSON(r.Context(), rv.transport, url, header, rv.ratingsTimeout)
	if err != nil {
		rv.log.Warn("ratings unavailable", "err", err)
		return nil
	}
	var ratings struct {
		Ratings map[string]int `json:"ratings"`
	}
	if err := json.Unmarshal(body, &ratings); err != nil {
		rv.log.Warn("ratings unavailable", "err", fmt.Errorf("decode ratings from %s: %w", url, err))
		return nil
	}
	return ratings.Ratings
}
