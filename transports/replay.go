package transports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/opengw/gateway/tracker"
)

// Replayer runs Failed and Invalid messages again through the current mappings
// (pipeline.Pipeline implements it).
type Replayer interface {
	Replay(ctx context.Context, clientID string, f tracker.Filter) (replayed, skipped int, err error)
}

// trackingReplayed is the body of a 202 from POST /tracking/replay.
type trackingReplayed struct {
	Replayed int `json:"replayed"`
	// Skipped counts selected messages whose raw records are no longer kept (retention).
	Skipped int `json:"skipped,omitempty"`
}

// Replay answers POST /tracking/replay for client clientID: body {"id": "<request id>"} or
// {"search": [...]} with the criteria of POST /tracking (messageStatus limited to Failed and
// Invalid; default both). The selected messages go back to Queued and run through the current
// mapping version; 202 {"replayed": n}. At most pipeline.MaxReplay messages per call: call again
// for more. Another client's messages are never selected.
func (a *TrackingAPI) Replay(w http.ResponseWriter, r *http.Request, clientID string) {
	if a.Replayer == nil {
		a.fail(w, r, &trackingBadRequest{status: http.StatusNotFound, msg: "replay is not available on this gateway"})
		return
	}
	body, err := trackingReadBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var in struct {
		ID     json.RawMessage `json:"id"`
		Search json.RawMessage `json:"search"`
	}
	if err := trackingDecode(body, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	var f tracker.Filter
	switch {
	case !trackingAbsent(in.ID) && !trackingAbsent(in.Search):
		a.fail(w, r, trackingBad(`give either id or search, not both`))
		return
	case !trackingAbsent(in.ID):
		var id string
		if err := json.Unmarshal(in.ID, &id); err != nil || strings.TrimSpace(id) == "" {
			a.fail(w, r, trackingBad("id must be a request id (a non-empty string), got %s", trackingShort(in.ID)))
			return
		}
		f.RequestIDs = []string{trackingNormalizeID(id)}
	case !trackingAbsent(in.Search):
		q := trackingQuery{}
		if err := q.parseSearch(in.Search, a.now()); err != nil {
			a.fail(w, r, err)
			return
		}
		if q.empty {
			trackingWrite(w, http.StatusAccepted, trackingReplayed{})
			return
		}
		f = q.filter
	default:
		a.fail(w, r, trackingBad(`id or search is required: {"id": "<request id>"} or {"search": [...]}`))
		return
	}
	for _, st := range f.Statuses {
		if st != tracker.Failed && st != tracker.Invalid {
			a.fail(w, r, trackingBad("messageStatus %q cannot be replayed: only Failed and Invalid messages are", st))
			return
		}
	}
	n, skipped, err := a.Replayer.Replay(r.Context(), clientID, f)
	switch {
	case errors.Is(err, tracker.ErrInvalidFilter):
		a.fail(w, r, trackingBad("%v", err))
		return
	case err != nil:
		a.fail(w, r, fmt.Errorf("replay messages of client %s: %w", clientID, err))
		return
	}
	a.logger().Info("replay", "client", clientID, "replayed", n, "skipped", skipped)
	trackingWrite(w, http.StatusAccepted, trackingReplayed{Replayed: n, Skipped: skipped})
}
