package transports

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Check is one readiness condition of GET /readyz. Use it through a pointer: it remembers a
// run in progress.
type Check struct {
	// Name says what is checked ("database", "router", "backlog"); it keys the JSON answer.
	Name string
	// Run returns nil when the condition holds, else an error saying why not. It should respect
	// ctx; a run that does not answer within CheckTimeout fails the probe.
	Run func(ctx context.Context) error

	// running is the run in progress, if any: a check blocked on a stuck database is waited
	// for by the next probes, not started again by each of them.
	mu      sync.Mutex
	running *checkRun
}

type checkRun struct {
	done chan struct{} // closed when err is set
	err  error
}

// CheckTimeout bounds each readiness check of one probe.
const CheckTimeout = 2 * time.Second

// result runs the check, or joins the run in progress, and waits for at most CheckTimeout.
func (c *Check) result(ctx context.Context) error {
	c.mu.Lock()
	run := c.running
	if run == nil {
		run = &checkRun{done: make(chan struct{})}
		c.running = run
		go func() {
			// Not bound to this probe: the run may outlive it, and the next probe joins it.
			runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*CheckTimeout)
			defer cancel()
			run.err = c.Run(runCtx)
			c.mu.Lock()
			c.running = nil
			c.mu.Unlock()
			close(run.done)
		}()
	}
	c.mu.Unlock()
	timer := time.NewTimer(CheckTimeout)
	defer timer.Stop()
	select {
	case <-run.done:
		return run.err
	case <-timer.C:
		return fmt.Errorf("no answer within %s", CheckTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readiness is GET /readyz: 200 when every check passes, else 503; the JSON body gives each
// check's state ("ok" or why not) and lists the failed ones. Checks run concurrently.
func (s *Server) readiness(w http.ResponseWriter, r *http.Request) {
	type answer struct {
		Status string            `json:"status"` // ready | unavailable
		Checks map[string]string `json:"checks"`
		Failed []string          `json:"failed,omitempty"`
	}
	errs := make([]error, len(s.Ready))
	var wg sync.WaitGroup
	for i, c := range s.Ready {
		wg.Go(func() { errs[i] = c.result(r.Context()) })
	}
	wg.Wait()
	a := answer{Status: "ready", Checks: make(map[string]string, len(s.Ready))}
	for i, c := range s.Ready {
		if errs[i] != nil {
			a.Checks[c.Name] = errs[i].Error()
			a.Failed = append(a.Failed, c.Name)
			continue
		}
		a.Checks[c.Name] = "ok"
	}
	if len(a.Failed) > 0 {
		a.Status = "unavailable"
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, a)
		return
	}
	writeJSON(w, http.StatusOK, a)
}
