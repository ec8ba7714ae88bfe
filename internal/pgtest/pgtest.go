// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// The server is found through $GATEWAY_TEST_POSTGRES (a URL such as
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), defaulting to the local
// server every machine here runs. Each call of New creates a database named gw_test_<random>
// and drops it (WITH (FORCE)) when the test ends, so runs never see each other's rows.
//
// Without a reachable server the test is skipped with a message saying so, unless
// $GATEWAY_REQUIRE_POSTGRES=1 (set by .ci/run), which turns the skip into a failure: CI never
// skips the PostgreSQL half of the suite.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// DefaultServer is the local server used when $GATEWAY_TEST_POSTGRES is unset.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Server returns the admin URL of the test server.
func Server() string {
	if u := os.Getenv("GATEWAY_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultServer
}

var (
	reachOnce sync.Once
	reachErr  error
)

func reachable() error {
	reachOnce.Do(func() {
		db, err := sql.Open("pgx", Server())
		if err != nil {
			reachErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		reachErr = db.PingContext(ctx)
	})
	return reachErr
}

// New creates a fresh database and returns its URL; it is dropped when tb ends. It skips tb
// (or fails it, under $GATEWAY_REQUIRE_POSTGRES=1) when no server is reachable.
func New(tb testing.TB) string {
	tb.Helper()
	if err := reachable(); err != nil {
		if os.Getenv("GATEWAY_REQUIRE_POSTGRES") == "1" {
			tb.Fatalf("PostgreSQL at %s is required ($GATEWAY_REQUIRE_POSTGRES=1) but unreachable: %v", Server(), err)
		}
		tb.Skipf("SKIP PostgreSQL half: no server at %s (%v); set $GATEWAY_TEST_POSTGRES", Server(), err)
	}
	admin, err := sql.Open("pgx", Server())
	if err != nil {
		tb.Fatalf("open %s: %v", Server(), err)
	}
	defer admin.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gw_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		admin, err := sql.Open("pgx", Server())
		if err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(Server())
	if err != nil {
		tb.Fatalf("parse %s: %v", Server(), err)
	}
	u.Path = "/" + name
	return u.String()
}

// Open opens a *sql.DB (pgx driver) on a fresh database, closed when tb ends.
func Open(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	dsn := New(tb)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatalf("open %s: %v", dsn, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db, dsn
}

// Describe is a short description of the server for test logs.
func Describe() string { return fmt.Sprintf("PostgreSQL at %s", Server()) }
