package mappings

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const watchedMapping = `format: orders
id: id
routes:
  - sink: s
    fields:
      order_id: id
`

// lockedBuffer is a log destination safe for the watcher's goroutine and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startWatcher loads dir, starts a fast Watcher on it and returns the initial set, the
// channel OnChange feeds and the log.
func startWatcher(t *testing.T, dir string, check func(*Set) error) (*Set, chan *Set, *lockedBuffer) {
	t.Helper()
	set, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan *Set, 10)
	logs := &lockedBuffer{}
	w := &Watcher{
		Dir: dir, Interval: 5 * time.Millisecond, Check: check,
		OnChange: func(s *Set) { changes <- s },
		Log:      slog.New(slog.NewTextHandler(logs, nil)),
	}
	w.Start(set)
	t.Cleanup(w.Stop)
	return set, changes, logs
}

func waitChange(t *testing.T, changes chan *Set, logs *lockedBuffer) *Set {
	t.Helper()
	select {
	case s := <-changes:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("no reload; log:\n%s", logs)
		return nil
	}
}

func noChange(t *testing.T, changes chan *Set, wait time.Duration) {
	t.Helper()
	select {
	case s := <-changes:
		t.Fatalf("unexpected reload: %v", s.Versions())
	case <-time.After(wait):
	}
}

func waitLog(t *testing.T, logs *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log does not contain %q:\n%s", want, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherReloadsAValidChange(t *testing.T) {
	dir := writeFiles(t, map[string]string{"orders.yaml": watchedMapping})
	old, changes, logs := startWatcher(t, dir, nil)

	edited := strings.Replace(watchedMapping, "order_id: id", "order_id: upper(id)", 1)
	if err := os.WriteFile(filepath.Join(dir, "orders.yaml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	set := waitChange(t, changes, logs)
	m, _ := set.Get("orders")
	if got := string(m.Apply([]byte(`{"id":"a1"}`)).Routes[0].JSON()); got != `{"order_id":"A1"}` {
		t.Errorf("reloaded mapping gives %s", got)
	}
	if o, _ := old.Get("orders"); o.Version == m.Version {
		t.Errorf("version unchanged: %s", m.Version)
	}
	waitLog(t, logs, `msg="mappings reloaded"`)
	waitLog(t, logs, `versions="orders=`+m.Version+`"`)
	waitLog(t, logs, "changed=orders")

	// A new format is picked up too.
	if err := os.WriteFile(filepath.Join(dir, "refunds.yaml"), []byte(strings.Replace(watchedMapping, "orders", "refunds", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	set = waitChange(t, changes, logs)
	if got := strings.Join(set.Formats(), ","); got != "orders,refunds" {
		t.Errorf("formats after adding a file: %s", got)
	}
	waitLog(t, logs, "changed=+refunds")
}

func TestWatcherRefusesABrokenChange(t *testing.T) {
	dir := writeFiles(t, map[string]string{"orders.yaml": watchedMapping})
	_, changes, logs := startWatcher(t, dir, nil)
	file := filepath.Join(dir, "orders.yaml")

	broken := strings.Replace(watchedMapping, "order_id: id", "order_id: upper(id", 1)
	if err := os.WriteFile(file, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="mapping change refused; the previous mappings keep serving"`)
	waitLog(t, logs, `problem="`+file+`:6:24: routes[0].fields.order_id: unexpected token EOF"`)
	noChange(t, changes, 50*time.Millisecond)
	if n := strings.Count(logs.String(), "mapping change refused"); n != 1 {
		t.Errorf("the same broken folder was reported %d times", n)
	}

	// Fixing it reloads, even back to the version that was serving.
	if err := os.WriteFile(file, []byte(watchedMapping), 0o644); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, logs)
}

func TestWatcherIgnoresNonChanges(t *testing.T) {
	dir := writeFiles(t, map[string]string{"orders.yaml": watchedMapping})
	_, changes, logs := startWatcher(t, dir, nil)
	// Same content, new modification time: loaded, same version, not handed on.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(dir, "orders.yaml"), later, later); err != nil {
		t.Fatal(err)
	}
	// Editor litter is not watched at all.
	for _, name := range []string{".orders.yaml.swp", "orders.yaml~", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk: ["), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noChange(t, changes, 100*time.Millisecond)
	if strings.Contains(logs.String(), "refused") || strings.Contains(logs.String(), "reloaded") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestWatcherWatchesSchemaFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"orders.yaml":         strings.Replace(watchedMapping, "id: id\n", "id: id\nschema: schemas/order.json\n", 1),
		"schemas/order.json":  `{"properties": {"id": {"type": "string"}}}`,
		"schemas/.order.json": `ignored`,
	})
	_, changes, logs := startWatcher(t, dir, nil)
	if err := os.WriteFile(filepath.Join(dir, "schemas/order.json"), []byte(`{"properties": {"id": {"type": "integer"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	set := waitChange(t, changes, logs)
	m, _ := set.Get("orders")
	if got := m.Apply([]byte(`{"id":"a1"}`)).Errors; len(got) != 1 || got[0] != "schema: /id: must be of type integer, got string" {
		t.Errorf("errors after the schema edit: %q", got)
	}
}

func TestWatcherCheckRefuses(t *testing.T) {
	dir := writeFiles(t, map[string]string{"orders.yaml": watchedMapping})
	check := func(s *Set) error {
		if _, ok := s.Get("orders"); !ok {
			return errors.New("gateway.yaml: client \"demo\" is assigned format \"orders\", which no mapping defines")
		}
		return nil
	}
	_, changes, logs := startWatcher(t, dir, check)
	if err := os.WriteFile(filepath.Join(dir, "orders.yaml"), []byte(strings.Replace(watchedMapping, "orders", "sales", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `problem="gateway.yaml: client \"demo\" is assigned format \"orders\", which no mapping defines"`)
	noChange(t, changes, 50*time.Millisecond)
}

func TestWatcherStop(t *testing.T) {
	(&Watcher{}).Stop() // before Start: nothing to stop
	dir := writeFiles(t, map[string]string{"orders.yaml": watchedMapping})
	set, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Dir: dir, Interval: time.Millisecond, OnChange: func(*Set) {}, Log: slog.New(slog.DiscardHandler)}
	w.Start(set)
	w.Stop()
	w.Stop()
}

// TestWatcherWarnsAboutFailingTests: a valid change whose own test cases fail goes live, and
// each failing case is logged as a warning.
func TestWatcherWarnsAboutFailingTests(t *testing.T) {
	withTest := watchedMapping + `tests:
  - name: an order is mapped
    input: {id: a1}
    expect: {s: {order_id: a1}}
`
	dir := writeFiles(t, map[string]string{"orders.yaml": withTest})
	_, changes, logs := startWatcher(t, dir, nil)
	edited := strings.Replace(withTest, "order_id: id", "order_id: upper(id)", 1)
	if err := os.WriteFile(filepath.Join(dir, "orders.yaml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, logs)
	waitLog(t, logs, `level=WARN msg="mapping test fails"`)
	waitLog(t, logs, `test="an order is mapped" diff="field order_id: expected \"a1\", got \"A1\""`)
}
