package app

import (
	"log/slog"
	"net/http"
	"strconv"
)

// RatingsOptions configures the ratings service.
type RatingsOptions struct {
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Ratings is the JSON answer of GET /ratings/{id}.
type Ratings struct {
	ID      int            `json:"id"`
	Ratings map[string]int `json:"ratings"`
}

// NewRatings returns the ratings service (v1): GET /ratings/{id} and
// GET /health.
func NewRatings(opts RatingsOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "please provide numeric product ID"})
			return
		}
		writeJSON(w, http.StatusOK, Ratings{
			ID:      id,
			Ratings: map[string]int{"Reviewer1": 5, "Reviewer2": 4},
		})
	})
	mux.HandleFunc("GET /health", healthHandler("Ratings"))
	return logRequests(opts.Logger, "ratings", mux)
}
