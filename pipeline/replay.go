package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// MaxReplay is the most messages one Replay call runs again; a bigger selection is replayed by
// calling again (a replayed message is Queued, so it is not selected twice).
const MaxReplay = 10000

// ErrNothingKept means a selected request's raw records are no longer kept (retention.payloads),
// so its messages cannot be replayed.
var ErrNothingKept = errors.New("the raw records are no longer kept (retention.payloads)")

// Replay runs the Failed and Invalid messages f selects, of client clientID, through the current
// mappings again: in one transaction they go back to Queued (their earlier errors stay visible)
// and fragments naming them are queued. It replays at most MaxReplay messages and returns how
// many; messages of requests whose records are no longer kept are skipped (and counted in
// skipped). f's Statuses may only hold Failed and Invalid (empty means both).
func (p *Pipeline) Replay(ctx context.Context, clientID string, f tracker.Filter) (replayed, skipped int, err error) {
	return Replay(ctx, p.cfg.Store, clientID, f, nil)
}

// Replay is Pipeline.Replay on st, for tools that replay without running a pipeline (the
// running gateways process what it queues). keep, if not nil, selects among the requests f
// finds (e.g. by format).
func Replay(ctx context.Context, st store.Store, clientID string, f tracker.Filter, keep func(tracker.RequestView) bool) (replayed, skipped int, err error) {
	for _, st := range f.Statuses {
		if st != tracker.Failed && st != tracker.Invalid {
			return 0, 0, fmt.Errorf("%w: only Failed and Invalid messages can be replayed, not %s", tracker.ErrInvalidFilter, st)
		}
	}
	if len(f.Statuses) == 0 {
		f.Statuses = []tracker.Status{tracker.Failed, tracker.Invalid}
	}
	f.Page, f.PageSize = 0, 0
	page, err := st.Tracker().Find(ctx, clientID, f)
	if err != nil {
		return 0, 0, err
	}
	type job struct {
		req     tracker.RequestView
		offsets []int
		indexes []int
	}
	var jobs []job
	budget := MaxReplay
	for _, rv := range page.Requests {
		if keep != nil && !keep(rv) {
			continue
		}
		var indexes []int
		for _, m := range rv.Messages {
			if (m.Status == tracker.Failed || m.Status == tracker.Invalid) && budget > 0 {
				indexes = append(indexes, m.Index)
				budget--
			}
		}
		if len(indexes) == 0 {
			continue
		}
		offsets, err := st.RecordOffsets(ctx, rv.ID)
		if err != nil {
			return 0, 0, err
		}
		if len(offsets) == 0 {
			skipped += len(indexes)
			continue
		}
		jobs = append(jobs, job{req: rv, offsets: offsets, indexes: indexes})
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		replayed = 0
		for _, j := range jobs {
			moved, err := tx.Tracker().Replay(j.req.ID, j.indexes)
			if err != nil {
				return err
			}
			replayed += len(moved)
			var msgs []*message.Message
			for off, indexes := range byFragment(j.offsets, moved) {
				msgs = append(msgs, fragmentMessage(j.req.ID, clientID, j.req.Format, off, 0, indexes))
			}
			if err := tx.Publish(TopicFragments, msgs...); err != nil {
				return fmt.Errorf("queue replay of request %s: %w", j.req.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return replayed, skipped, nil
}

// byFragment groups ascending indexes by the offset of the fragment holding them: the greatest
// offset not above the index.
func byFragment(offsets, indexes []int) map[int][]int {
	out := map[int][]int{}
	for _, idx := range indexes {
		i := sort.Search(len(offsets), func(i int) bool { return offsets[i] > idx }) - 1
		if i < 0 {
			continue // before the first kept fragment: cannot happen for a kept request
		}
		out[offsets[i]] = append(out[offsets[i]], idx)
	}
	return out
}
