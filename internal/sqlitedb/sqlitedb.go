// Package sqlitedb opens SQLite databases the way this gateway needs them: one writer connection
// whose transactions are group-committed, and a separate pool of readers.
//
// SQLite allows one writer at a time and, with synchronous=FULL, every commit costs an fsync
// (0.7–1.2 ms measured here). Write therefore gathers the work of concurrent callers into one
// transaction and commits it once: many callers, one fsync. When one caller's function fails,
// the transaction is rolled back and the others' functions run again without it, so that one
// caller's failure leaves none of its changes behind.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// A group stops taking jobs at maxGroup jobs (maxUrgent for urgent ones; see loop for how the
// two kinds share the writer) or once it has run for its budget, so a burst of work cannot hold
// the write lock, and delay every waiting caller, for long.
//
// The background budget is short because an urgent job that arrives during a background group
// waits for the job that is running and then for the group's commit, which writes every page the
// group dirtied. 1 ms instead of 5 made the 202 of a 10,000-record push under load faster (p50
// ×0.89, p99 ×0.84 over 22 alternating runs) at the same records per second end to end
// (BENCHMARKS.md).
const (
	maxGroup         = 256
	maxUrgent        = 32
	urgentBudget     = 5 * time.Millisecond
	backgroundBudget = time.Millisecond
)

// writerDriver is the "sqlite3" driver with the writer connection's settings that the DSN cannot
// carry, applied to every connection it opens (a replaced connection gets them too):
//   - Checkpoints run in the background (see checkpointLoop) instead of inside whichever commit
//     crosses the WAL size threshold, where they would stall that commit — often a partner's 202.
//   - Temporary data stays in memory. SQLite builds a transient table for each UPDATE ...
//     RETURNING: one of a single row took 100 µs with temporary data in files and 7 µs in
//     memory, and the tracker's counter update is one, run for every settled delivery.
const writerDriver = "sqlite3-gateway-writer"

func init() {
	sql.Register(writerDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY", nil)
		return err
	}})
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("sqlitedb: database is closed")

// DB is an SQLite database file with a group-committing writer and a reader pool.
// It is safe for concurrent use.
type DB struct {
	path       string
	write      *sql.DB
	read       *sql.DB
	checkpoint *sql.DB

	jobs      chan *job
	urgent    chan *job // served before jobs: writes a client is waiting on
	closing   chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}

	checkpointDone chan struct{}

	// backgroundBudget is the package's constant; tests that need a group of several slow jobs
	// lengthen it before their first Write.
	backgroundBudget time.Duration

	// mu guards closed: Write holds it shared while queueing, so once Close has set closed no
	// job can be queued behind the final drain.
	mu     sync.RWMutex
	closed bool
}

type job struct {
	urgent bool
	ctx    context.Context
	fn     func(tx *sql.Tx) error
	done   chan error
}

// Open opens (creating if needed) the database file at path. The file, and its -wal and -shm
// companions, are made mode 0600: they hold partners' data.
func Open(path string) (*DB, error) {
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	// WAL lets readers run while the writer writes; synchronous=FULL makes a commit survive power
	// loss; _txlock=immediate takes the write lock at BEGIN so a transaction never fails half way
	// for lack of it; busy_timeout covers other processes (the CLI, sqlite3 shell) briefly holding it.
	writeDSN := "file:" + url.PathEscape(path) +
		"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=1" +
		// Statements are reused across transactions instead of being compiled for each one:
		// compiling was a quarter of the writer's CPU time.
		"&_stmt_cache_size=256"
	w, err := sql.Open(writerDriver, writeDSN)
	if err != nil {
		return nil, fmt.Errorf("open %s for writing: %w", path, err)
	}
	// One writer connection: Go's pool queues callers fairly, SQLite's busy handler does not.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	cp, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
	}
	cp.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=1&_query_only=1&_stmt_cache_size=64")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{
		path:       path,
		write:      w,
		read:       r,
		checkpoint: cp,
		jobs:       make(chan *job, maxGroup),
		urgent:     make(chan *job, maxGroup),
		closing:    make(chan struct{}),
		loopDone:   make(chan struct{}),

		checkpointDone: make(chan struct{}),

		backgroundBudget: backgroundBudget,
	}
	go db.loop()
	go db.checkpointLoop()
	return db, nil
}

// restrictFiles creates the database file at path with mode 0600 if it does not exist (SQLite
// gives its -wal and -shm files the database's mode) and narrows existing files to 0600.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restrict %s to its owner: %w", p, err)
		}
	}
	return nil
}

// Path is the file the database lives in.
func (db *DB) Path() string { return db.path }

// Reader is the pool for queries. It sees everything committed by Write (WAL snapshot per query).
func (db *DB) Reader() *sql.DB { return db.read }

// Exec runs a statement outside group commit, e.g. schema migrations at start-up.
// It waits for the writer connection like any other write.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := db.Write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

type urgentKey struct{}

// Urgent marks a context so that Write serves it before background writes: use it for writes
// an HTTP client is waiting on (an intake commit), not for pipeline work.
func Urgent(ctx context.Context) context.Context { return context.WithValue(ctx, urgentKey{}, true) }

// Write runs fn in a transaction it may share with other concurrent Write calls, and returns
// once that transaction is committed (durable: synchronous=FULL). If fn returns an error, none
// of its changes are kept and Write returns that error. If the shared commit fails, every
// caller of the group gets the commit error.
//
// fn may run more than once: when another function of the same group fails, the transaction is
// rolled back and the rest of the group runs again in a new one (cheaper than a savepoint per
// function, whose journal copied every page a function changed: 1-record pushes cost the
// writer 91 µs each with savepoints, 70 without; pipeline's BenchmarkAccept1). So fn must
// write only through tx and set the results it hands back afresh on every run. fn must not
// call Write (it would deadlock) and should not block on anything but tx.
func (db *DB) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	j := &job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	queue := db.jobs
	if ctx.Value(urgentKey{}) != nil {
		j.urgent = true
		queue = db.urgent
	}
	select {
	case queue <- j:
		db.mu.RUnlock()
	case <-ctx.Done():
		db.mu.RUnlock()
		return ctx.Err()
	}
	// Once queued the job runs to completion; waiting for it keeps the contract that a nil
	// error means committed.
	return <-j.done
}

func (db *DB) loop() {
	defer close(db.loopDone)
	lastUrgent := false
	for {
		// Urgent and background groups alternate when both kinds wait: urgent commits are never
		// stuck behind a long background group, and a flood of them cannot starve the
		// pipeline that drains what they accept.
		var first *job
		if lastUrgent {
			first = db.take(db.jobs)
		}
		if first == nil {
			first = db.take(db.urgent)
		}
		if first == nil {
			select {
			case first = <-db.urgent:
			case first = <-db.jobs:
			case <-db.closing:
				// Close waited for every queued send: answer what is left, one by one.
				for {
					select {
					case j := <-db.urgent:
						db.runGroup(j)
					case j := <-db.jobs:
						db.runGroup(j)
					default:
						return
					}
				}
			}
		}
		lastUrgent = first.urgent
		db.runGroup(first)
	}
}

// take returns a job from queue, or nil when none is waiting.
func (db *DB) take(queue chan *job) *job {
	select {
	case j := <-queue:
		return j
	default:
		return nil
	}
}

// runGroup runs first and, in the same transaction, more jobs of the same kind while they wait
// and the group limits allow; then it commits and answers every caller.
func (db *DB) runGroup(first *job) {
	group, results, err := db.commitGroup(first)
	for i, j := range group {
		if err != nil && results[i] == nil {
			results[i] = err
		}
		j.done <- results[i]
	}
}

// commitGroup returns the jobs it ran, each one's own error, and the transaction's error.
func (db *DB) commitGroup(first *job) ([]*job, []error, error) {
	group := []*job{first}
	results := []error{nil}
	tx, err := db.write.Begin()
	if err != nil {
		return group, results, fmt.Errorf("begin transaction on %s: %w", db.path, err)
	}
	start := time.Now()
	queue, limit, budget := db.jobs, maxGroup, db.backgroundBudget
	if first.urgent {
		queue, limit, budget = db.urgent, maxUrgent, urgentBudget
	}
	for i := 0; ; i++ {
		var ran bool
		if ran, results[i] = db.runJob(tx, group[i]); results[i] != nil && ran {
			if tx, err = db.redo(tx, group[:i], results[:i]); err != nil {
				return group, results, err
			}
		}
		if i+1 == limit || time.Since(start) > budget || db.isClosing() {
			break
		}
		// A background group yields to a waiting urgent job after the job it is running: an
		// urgent job waits for at most one background job and a commit. A grace of 1 ms, to
		// amortise the commit over more background jobs, cost 1-record pushes a fifth of their
		// acknowledgements per second once the pipeline kept hundreds of jobs waiting
		// (pipeline.QueueTopics); without it big pushes go end to end about 5 % slower
		// (BENCHMARKS.md).
		if !first.urgent && len(db.urgent) > 0 {
			break
		}
		next := db.take(queue)
		if next == nil {
			break
		}
		group = append(group, next)
		results = append(results, nil)
	}
	if err := tx.Commit(); err != nil {
		return group, results, fmt.Errorf("commit on %s: %w", db.path, err)
	}
	return group, results, nil
}

// runJob runs one caller's function in tx, unless its caller has gone; ran reports whether it
// did (and so may have written before it failed).
func (db *DB) runJob(tx *sql.Tx, j *job) (ran bool, err error) {
	if err := j.ctx.Err(); err != nil {
		return false, err
	}
	return true, j.fn(tx)
}

// redo undoes a failed job: it rolls tx back and runs the jobs of group whose result is still
// nil (the ones that had succeeded) again in a new transaction, which it returns. A job that
// fails this time gets its error, and the rest run again, until a run succeeds.
func (db *DB) redo(tx *sql.Tx, group []*job, results []error) (*sql.Tx, error) {
	if err := tx.Rollback(); err != nil {
		return nil, fmt.Errorf("roll back after a failed write on %s: %w", db.path, err)
	}
	for {
		tx, err := db.write.Begin()
		if err != nil {
			return nil, fmt.Errorf("begin transaction on %s: %w", db.path, err)
		}
		failed := false
		for i, j := range group {
			if results[i] != nil {
				continue
			}
			var ran bool
			if ran, results[i] = db.runJob(tx, j); results[i] != nil && ran {
				failed = true
				break
			}
		}
		if !failed {
			return tx, nil
		}
		if err := tx.Rollback(); err != nil {
			return nil, fmt.Errorf("roll back after a failed write on %s: %w", db.path, err)
		}
	}
}

func (db *DB) isClosing() bool {
	select {
	case <-db.closing:
		return true
	default:
		return false
	}
}

// Checkpoint pacing: a passive checkpoint (never blocks the writer or readers) every
// checkpointEvery; when the WAL still holds over restartFrames frames, a RESTART checkpoint
// (waits for readers, briefly blocks the writer) lets the next writer start the WAL over, so it
// cannot grow without bound under constant reads.
const (
	checkpointEvery = 100 * time.Millisecond
	restartFrames   = 16384 // 64 MiB of 4 KiB pages
)

func (db *DB) checkpointLoop() {
	defer close(db.checkpointDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-db.closing:
			return
		case <-t.C:
		}
		var busy, frames, done int
		if err := db.checkpoint.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
			continue // the next tick tries again; a failed checkpoint loses nothing
		}
		if frames > restartFrames {
			db.checkpoint.Exec("PRAGMA wal_checkpoint(RESTART)")
		}
	}
}

// Close stops accepting writes, finishes queued ones and closes both pools. It is idempotent.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closed = true
		db.mu.Unlock()
		close(db.closing)
		<-db.loopDone
		<-db.checkpointDone
		_, cpErr := db.checkpoint.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		err = errors.Join(cpErr, db.checkpoint.Close(), db.write.Close(), db.read.Close())
	})
	return err
}
