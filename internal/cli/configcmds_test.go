package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/xdsserver"
)

// syncServer stands in for the control plane's GET /api/v1/sync: answer
// gives the report for the nth question (from 1) and the wait it asked
// for.
func syncServer(t *testing.T, answer func(n int, wait time.Duration) xdsserver.SyncReport) *controlapi.Client {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/sync" || r.URL.Query().Get("revision") != "7" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
			return
		}
		var wait time.Duration
		if v := r.URL.Query().Get("wait"); v != "" {
			var err error
			if wait, err = time.ParseDuration(v); err != nil {
				http.Error(w, "bad wait in "+r.URL.String(), http.StatusBadRequest)
				return
			}
		}
		json.NewEncoder(w).Encode(answer(int(n.Add(1)), wait))
	}))
	t.Cleanup(srv.Close)
	return controlapi.NewClient(strings.TrimPrefix(srv.URL, "http://"))
}

func TestWaitSynced(t *testing.T) {
	late := xdsserver.SyncReport{Revision: 7, Proxies: []xdsserver.ProxySync{
		{ID: "a.default", Synced: false}, {ID: "b.default", Synced: true},
	}}
	done := xdsserver.SyncReport{Revision: 7, Done: true, Proxies: []xdsserver.ProxySync{
		{ID: "a.default", Synced: true}, {ID: "b.default", Synced: true},
	}}

	t.Run("answered on a later question", func(t *testing.T) {
		// The first answer comes at once and not done, as from a
		// control plane that does not hold the question.
		c := syncServer(t, func(n int, _ time.Duration) xdsserver.SyncReport {
			if n == 1 {
				return late
			}
			return done
		})
		var out, errb bytes.Buffer
		if err := waitSynced(context.Background(), &globals{stdout: &out, stderr: &errb}, c, 7, 10*time.Second); err != nil {
			t.Fatalf("waitSynced: %v", err)
		}
		if got := out.String(); got != "revision 7 is ACKed by all 2 proxies\n" {
			t.Errorf("printed %q", got)
		}
	})

	t.Run("an answer later than the deadline", func(t *testing.T) {
		// Held a little past what was asked (a slow control plane): the
		// held questions miss the deadline; a last quick one still
		// names who is late.
		c := syncServer(t, func(_ int, wait time.Duration) xdsserver.SyncReport {
			if wait > 0 {
				time.Sleep(wait + 50*time.Millisecond)
			}
			return late
		})
		err := waitSynced(context.Background(), &globals{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}, c, 7, 200*time.Millisecond)
		if err == nil || !strings.HasSuffix(err.Error(), "not yet ACKed by: a.default") {
			t.Errorf("waitSynced = %v, want a timeout naming a.default", err)
		}
	})

	t.Run("timeout names the late proxies", func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		var longest atomic.Int64
		c := syncServer(t, func(_ int, wait time.Duration) xdsserver.SyncReport {
			if int64(wait) > longest.Load() {
				longest.Store(int64(wait))
			}
			time.Sleep(wait) // held for as long as asked, never done
			return late
		})
		err := waitSynced(context.Background(), &globals{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}, c, 7, timeout)
		if err == nil || err.Error() != "timed out after 300ms waiting for revision 7; not yet ACKed by: a.default" {
			t.Errorf("waitSynced = %v, want a timeout naming a.default", err)
		}
		if w := time.Duration(longest.Load()); w <= 0 || w > timeout {
			t.Errorf("asked to hold the question for %s, want within the %s timeout", w, timeout)
		}
	})
}
