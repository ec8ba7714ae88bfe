package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
)

var _ Sink = (*FileSink)(nil)

// FileSink appends records to an NDJSON file: one line per record, holding its Data object
// (compacted) with the client id added as its first member: {"_client_id":"demo",...}. It is
// not an upserting sink: a redelivered record is appended again, so readers
// must tolerate repeated lines (deduplicate by the record's own id if they care).
//
// Each Write appends all its lines with one write and fsyncs before returning nil. A Write that
// fails part way cuts the file back to where it began, so the file never holds half a line. Data
// that is not one JSON object is a permanent error; I/O errors are retryable.
//
// Write is safe for concurrent use; Writes are serialized.
type FileSink struct {
	name string
	path string

	// lock is a one-slot semaphore rather than a sync.Mutex so that waiting for it honours ctx.
	lock   chan struct{}
	f      *os.File
	closed atomic.Bool // set under lock
}

// OpenFileSink opens (creating if needed, mode 0600: it holds partners' data) the NDJSON file at path for the sink called
// name. The directory must exist.
func OpenFileSink(name, path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		err = f.Chmod(0o600) // a file created by an earlier version was 0644
	}
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w", name, err)
	}
	return &FileSink{name: name, path: path, lock: make(chan struct{}, 1), f: f}, nil
}

// Write appends one line per record and fsyncs. See FileSink.
func (s *FileSink) Write(ctx context.Context, records []Record) error {
	if done, err := precheck(ctx, s.name, &s.closed, records); done {
		return err
	}
	var buf []byte
	var compact bytes.Buffer
	for _, r := range records {
		if _, err := parseObject(r); err != nil {
			return fmt.Errorf("sink %q: %w", s.name, err)
		}
		compact.Reset()
		if err := json.Compact(&compact, r.Data); err != nil { // a line must not contain a newline
			return fmt.Errorf("sink %q: %w", s.name, Permanent(fmt.Errorf("record %s: %w", r.ID, err)))
		}
		buf = append(appendWithClient(buf, r.ClientID, compact.Bytes()), '\n')
	}

	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sink %q: %w", s.name, ctx.Err())
	}
	defer func() { <-s.lock }()
	if s.closed.Load() {
		return fmt.Errorf("sink %q: %w", s.name, ErrClosed)
	}
	info, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("sink %q: stat %s: %w", s.name, s.path, err)
	}
	if _, err := s.f.Write(buf); err != nil {
		if terr := s.f.Truncate(info.Size()); terr != nil {
			return fmt.Errorf("sink %q: append to %s: %w (and cutting back the partial write failed: %v)", s.name, s.path, err, terr)
		}
		return fmt.Errorf("sink %q: append to %s: %w", s.name, s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		// The lines may or may not be on disk; the retry may repeat them, which the contract allows.
		return fmt.Errorf("sink %q: fsync %s: %w", s.name, s.path, err)
	}
	return nil
}

// Close waits for a running Write, then closes the file. It is idempotent.
func (s *FileSink) Close() error {
	s.lock <- struct{}{}
	defer func() { <-s.lock }()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("sink %q: close %s: %w", s.name, s.path, err)
	}
	return nil
}
