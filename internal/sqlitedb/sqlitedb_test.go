package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openWithTable opens a database in a temporary folder, closed when the test ends, with one
// table t (n INTEGER PRIMARY KEY) for the jobs to write.
func openWithTable(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(context.Background(), `CREATE TABLE t (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestWriteGroupsCallersAndIsolatesFailures(t *testing.T) {
	db := openWithTable(t)
	ctx := context.Background()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *sql.Tx) error {
				if _, err := tx.Exec(`INSERT INTO t (n) VALUES (?)`, i); err != nil {
					return err
				}
				if i%10 == 0 {
					return boom // its insert must be rolled back, the others kept
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != errors.Is(err, boom) {
			t.Fatalf("job %d: err = %v", i, err)
		}
	}
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 180 {
		t.Fatalf("rows = %d, want 180", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(*sql.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestWriterSettings checks the settings writerDriver gives the writer connection: temporary
// data (RETURNING's transient tables) in memory and no checkpoint inside a commit.
func TestWriterSettings(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tempStore, autoCheckpoint int
	if err := db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := tx.QueryRow(`PRAGMA temp_store`).Scan(&tempStore); err != nil {
			return err
		}
		return tx.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&autoCheckpoint)
	}); err != nil {
		t.Fatal(err)
	}
	if tempStore != 2 || autoCheckpoint != 0 {
		t.Errorf("writer: temp_store = %d, wal_autocheckpoint = %d; want 2 (memory) and 0", tempStore, autoCheckpoint)
	}
}

// TestFailedJobIsUndoneAndTheRestRunAgain queues three jobs behind a fourth that holds the
// writer for a whole group's time budget, so the three share the next group: the one that fails
// after writing leaves nothing behind, the one before it in the group runs again in a new
// transaction, and the one after it runs once.
func TestFailedJobIsUndoneAndTheRestRunAgain(t *testing.T) {
	db := openWithTable(t)
	db.backgroundBudget = 50 * time.Millisecond // jobs 1-3 fit in one group even under -race
	ctx := context.Background()
	boom := errors.New("boom")
	var mu sync.Mutex
	runs := map[int]int{}
	job := func(n int, fail bool) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			mu.Lock()
			runs[n]++
			first := runs[n] == 1
			mu.Unlock()
			if n == 0 && first {
				// On the writer's goroutine: no t.Fatal here.
				for deadline := time.Now().Add(10 * time.Second); len(db.jobs) < 3; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) { // the other three queue behind it...
						return errors.New("the other jobs were never queued")
					}
				}
				time.Sleep(db.backgroundBudget) // ...and its group ends with it, so theirs is one of three
			}
			if _, err := tx.Exec(`INSERT INTO t (n) VALUES (?)`, n); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		}
	}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); errs[0] = db.Write(ctx, job(0, false)) }()
	waitFor(t, func() bool { // job 0 holds the writer before the others queue
		mu.Lock()
		defer mu.Unlock()
		return runs[0] > 0
	})
	for n, fail := range []bool{false, true, false} {
		waitFor(t, func() bool { return len(db.jobs) == n }) // queued in this order
		wg.Add(1)
		go func() { defer wg.Done(); errs[n+1] = db.Write(ctx, job(n+1, fail)) }()
	}
	wg.Wait()
	if !errors.Is(errs[2], boom) || errs[0] != nil || errs[1] != nil || errs[3] != nil {
		t.Fatalf("errors = %v; want only job 2's boom", errs)
	}
	var got []int
	rows, err := db.Reader().Query(`SELECT n FROM t ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if fmt.Sprint(got) != "[0 1 3]" {
		t.Errorf("rows = %v; want [0 1 3] (the failed job's insert undone)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := map[int]int{0: 1, 1: 2, 2: 1, 3: 1}; fmt.Sprint(runs) != fmt.Sprint(want) {
		t.Errorf("runs per job = %v; want %v (job 1, before the failure, again)", runs, want)
	}
}

// TestBackgroundGroupCommitsAfterItsBudget: a background job that runs longer than the
// background budget ends its group, so the job queued behind it finds its write committed.
func TestBackgroundGroupCommitsAfterItsBudget(t *testing.T) {
	db := openWithTable(t)
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		slow <- db.Write(ctx, func(tx *sql.Tx) error {
			close(started)
			<-release
			time.Sleep(2 * backgroundBudget)
			_, err := tx.Exec(`INSERT INTO t (n) VALUES (1)`)
			return err
		})
	}()
	<-started
	var seen int
	next := make(chan error, 1)
	go func() {
		next <- db.Write(ctx, func(tx *sql.Tx) error {
			// The reader sees only what is committed.
			return db.Reader().QueryRow(`SELECT count(*) FROM t WHERE n = 1`).Scan(&seen)
		})
	}()
	waitFor(t, func() bool { return len(db.jobs) == 1 })
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	if seen != 1 {
		t.Fatal("the job queued behind a slow one ran in its transaction: the group outlived its budget")
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the writer's queue")
		}
	}
}

// TestUrgentWriteOvertakesBackgroundWork: an urgent write waits for the background job that is
// running, not for the background jobs queued behind it, which run after it.
func TestUrgentWriteOvertakesBackgroundWork(t *testing.T) {
	db := openWithTable(t)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	write := func(ctx context.Context, name string, fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Write(ctx, func(tx *sql.Tx) error {
				fn()
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	started, release := make(chan struct{}), make(chan struct{})
	write(context.Background(), "running", func() { close(started); <-release })
	<-started
	for i := range 3 {
		write(context.Background(), fmt.Sprint("queued", i), func() {})
	}
	waitFor(t, func() bool { return len(db.jobs) == 3 })
	write(Urgent(context.Background()), "urgent", func() {})
	waitFor(t, func() bool { return len(db.urgent) == 1 })
	close(release)
	wg.Wait()
	if len(order) != 5 || order[0] != "running" || order[1] != "urgent" {
		t.Fatalf("jobs ran in the order %v; want running, urgent, then the three queued", order)
	}
}
