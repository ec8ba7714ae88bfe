package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/tracker"
)

// replayCmd runs Failed or Invalid messages again through the current mappings, like
// POST /tracking/replay but for every client: the selected messages go back to Queued in the
// database and the running gateway (or gateways) process them.
func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "examples/gateway.yaml", "configuration file")
	dataDir := fs.String("data", "", "folder of the SQLite files (default from config, ./data)")
	database := fs.String("database", "", "postgres:// URL (default from config; empty: embedded SQLite)")
	request := fs.String("request", "", "replay the Failed and Invalid messages of this request id")
	status := fs.String("status", "", "replay every message in this status: Failed or Invalid")
	since := fs.String("since", "", "with --status: only requests received since this time (RFC 3339)")
	format := fs.String("format", "", "with --status: only requests of this format")
	logFlags := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}
	var f tracker.Filter
	switch {
	case (*request == "") == (*status == ""):
		return errors.New("replay: give exactly one of --request ID or --status Failed|Invalid")
	case *request != "":
		if *since != "" || *format != "" {
			return errors.New("replay: --since and --format go with --status, not --request")
		}
		f.RequestIDs = []string{*request}
	default:
		st, ok := tracker.ParseStatus(*status)
		if !ok || (st != tracker.Failed && st != tracker.Invalid) {
			return fmt.Errorf("replay: --status %q: only Failed and Invalid messages can be replayed", *status)
		}
		f.Statuses = []tracker.Status{st}
		if *since != "" {
			t, err := time.Parse(time.RFC3339, *since)
			if err != nil {
				return fmt.Errorf("replay: --since %q is not an RFC 3339 time such as 2026-11-29T08:00:00Z", *since)
			}
			f.ReceivedFrom = t
		}
	}
	cfg, _, err := loadAll(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *database != "" {
		cfg.Database = *database
	}
	be, err := openBackend(cfg, log, forTool)
	if err != nil {
		return err
	}
	defer be.close()
	var keep func(tracker.RequestView) bool
	if *format != "" {
		keep = func(v tracker.RequestView) bool { return v.Format == *format }
	}
	total := 0
	for _, c := range cfg.Clients {
		// A call replays at most pipeline.MaxReplay messages; a full batch means there may be
		// more (bounded: messages failing again at once are not chased for ever).
		for round := 0; round < 100; round++ {
			n, skipped, err := pipeline.Replay(ctx, be.store, c.ID, f, keep)
			if err != nil {
				return fmt.Errorf("replay messages of client %s: %w", c.ID, err)
			}
			if n+skipped > 0 {
				fmt.Fprintf(stdout, "client %s: %d messages replayed", c.ID, n)
				if skipped > 0 {
					fmt.Fprintf(stdout, ", %d not replayed (raw records no longer kept)", skipped)
				}
				fmt.Fprintln(stdout)
			}
			total += n
			if n < pipeline.MaxReplay {
				break
			}
		}
	}
	fmt.Fprintf(stdout, "%d messages replayed; the running gateway processes them through the current mappings\n", total)
	return nil
}
