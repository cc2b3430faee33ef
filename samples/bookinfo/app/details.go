package app

import (
	"log/slog"
	"net/http"
	"strconv"
)

// DetailsOptions configures the details service.
type DetailsOptions struct {
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Details is the JSON answer of GET /details/{id}.
type Details struct {
	ID        int    `json:"id"`
	Author    string `json:"author"`
	Year      int    `json:"year"`
	Type      string `json:"type"`
	Pages     int    `json:"pages"`
	Publisher string `json:"publisher"`
	Language  string `json:"language"`
	ISBN10    string `json:"ISBN-10"`
	ISBN13    string `json:"ISBN-13"`
}

// NewDetails returns the details service (v1): GET /details/{id} and
// GET /health.
func NewDetails(opts DetailsOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /details/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "please provide numeric product id"})
			return
		}
		writeJSON(w, http.StatusOK, Details{
			ID:        id,
			Author:    "William Shakespeare",
			Year:      1595,
			Type:      "paperback",
			Pages:     200,
			Publisher: "PublisherA",
			Language:  "English",
			ISBN10:    "1234567890",
			ISBN13:    "123-1234567890",
		})
	})
	mux.HandleFunc("GET /health", healthHandler("Details"))
	return logRequests(opts.Logger, "details", mux)
}
