package sqlitequeue

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"
)

func TestScratchWALGrowth(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	big := make([]byte, 10<<20)
	for i := range big { big[i] = byte(i * 7) }
	publish(t, q, "big", newMsg(string(big)))
	raw, err := sql.Open("sqlite3", "file:"+db.Path()+"?_busy_timeout=10000")
	if err != nil { t.Fatal(err) }
	defer raw.Close()
	wal := db.Path() + "-wal"
	measure := func(name string, f func()) {
		var a, b, c int
		if err := raw.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&a, &b, &c); err != nil { t.Fatal(err) }
		st, _ := os.Stat(wal)
		before := st.Size()
		start := time.Now()
		f()
		st, _ = os.Stat(wal)
		t.Logf("%s: wal %d -> %d bytes, %s", name, before, st.Size(), time.Since(start))
	}
	measure("claim", func() {
		ds, err := q.claim(context.Background(), "big", 1)
		if err != nil || len(ds) != 1 { t.Fatal(err) }
	})
	measure("extend same size", func() {
		db.Exec(context.Background(), "UPDATE queue_messages SET locked_until = locked_until + 1000")
	})
	measure("release to 0", func() {
		db.Exec(context.Background(), "UPDATE queue_messages SET locked_until = 0")
	})
	measure("small table update", func() {
		db.Exec(context.Background(), "CREATE TABLE IF NOT EXISTS x(a)")
	})
}
